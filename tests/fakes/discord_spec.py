"""What the Discord HTTP API accepts: requests held to Discord's own OpenAPI description.

Used by the Discord emulator in ``tests/fakes/discord.py``. The description is the vendored
``tests/fakes/specs/discord-openapi.json`` (HTTP API v10, OpenAPI 3.1; source and licence in
``tests/fakes/specs/README.md``), loaded lazily once per process.

:class:`DiscordApiSpec` finds the operation a request hits (path template + method), checks its query
parameters and validates its JSON body against the operation's schema with a small JSON-Schema subset
(``type``, ``properties``/``required``/``additionalProperties``, ``oneOf``/``anyOf``/``allOf``, ``$ref``,
``enum``/``const``, string, array and number bounds, ``pattern``). No third-party validator: the subset the
description uses is small, and the messages name the field the way Discord's own errors do.

Two leniencies, both matching what the real API accepts: snowflakes may be sent as JSON integers (discord.py
does for some fields), and a body field the schema does not list is a problem only where the schema lists
fields at all (an unknown field is silently ignored by Discord: a typo there is a silent bug, so it is flagged).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

SPEC_FILE = "discord-openapi.json"
SPECS_DIR = Path(__file__).resolve().parent / "specs"
API_PREFIX = "/api/v10"

_PARAM_RE = re.compile(r"\{([^}]+)\}")

#: fields discord.py 2.7 sends that the description omits but Discord accepts (schema -> field names):
#: tolerated, so that the library's own payloads are not flagged as the bot's mistakes
KNOWN_GAPS: dict[str, frozenset[str]] = {
    "ApplicationCommandUpdateRequest": frozenset({"nsfw"}),
    "ApplicationCommandCreateRequest": frozenset({"nsfw"}),
    "RichEmbed": frozenset({"flags"}),
    # discord.py sends ``tts`` with every edit; Discord ignores it there
    "MessageEditRequestPartial": frozenset({"tts"}),
    "IncomingWebhookUpdateForInteractionCallbackRequestPartial": frozenset({"tts"}),
    "IncomingWebhookUpdateRequestPartial": frozenset({"tts"}),
}
_MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Operation:
    """One operation of the description: ``method`` on the path ``template``."""

    method: str  # upper case
    template: str  # e.g. "/channels/{channel_id}/messages"
    raw: dict[str, Any]
    query: dict[str, dict[str, Any]]  # query parameter name -> {"schema": ..., "required": bool}

    @property
    def body_schema(self) -> dict[str, Any] | None:
        content = (self.raw.get("requestBody") or {}).get("content") or {}
        media = content.get("application/json") or next(iter(content.values()), None)
        return media.get("schema") if media else None

    @property
    def response_schema(self) -> dict[str, Any] | None:
        """The schema of the 200 answer, if the description gives one."""
        ok = (self.raw.get("responses") or {}).get("200") or {}
        media = (ok.get("content") or {}).get("application/json")
        return media.get("schema") if media else None

    @property
    def body_required(self) -> bool:
        return bool((self.raw.get("requestBody") or {}).get("required"))

    @property
    def needs_bot_token(self) -> bool:
        """False where the description allows no authorization (webhook tokens, interaction callbacks)."""
        security = self.raw.get("security")
        if security is None:
            return True
        return not any(entry == {} for entry in security)


class DiscordApiSpec:
    """The HTTP API description with request checks."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.version = str(raw.get("info", {}).get("version", "?"))
        self.schemas: dict[str, Any] = raw.get("components", {}).get("schemas", {})
        self._templates: list[tuple[int, re.Pattern[str], str]] = []
        self.operations: dict[tuple[str, str], Operation] = {}
        for template, item in raw.get("paths", {}).items():
            shared = [p for p in item.get("parameters", []) if p.get("in") == "query"]
            for method, op in item.items():
                if method == "parameters" or not isinstance(op, dict):
                    continue
                params = shared + [p for p in op.get("parameters", []) if p.get("in") == "query"]
                query = {
                    p["name"]: {"schema": p.get("schema", {}), "required": bool(p.get("required"))}
                    for p in params
                }
                self.operations[(method.upper(), template)] = Operation(method.upper(), template, op, query)
            escaped = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
            pattern = "^" + _PARAM_RE.sub(r"(?P<\1>[^/]+)", escaped) + "$"
            literal = len(_PARAM_RE.sub("", template))
            self._templates.append((literal, re.compile(pattern), template))
        # a literal segment beats a parameter: /users/@me/channels before /users/{user_id}/...
        self._templates.sort(key=lambda t: -t[0])

    # ----------------------------------------------------------------- routing
    def match(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The path template ``path`` (without the ``/api/v10`` prefix) belongs to, and its parameters."""
        for _, pattern, template in self._templates:
            m = pattern.match(path)
            if m:
                return template, m.groupdict()
        return None

    def operation(self, method: str, template: str) -> Operation | None:
        return self.operations.get((method.upper(), template))

    def methods_of(self, template: str) -> list[str]:
        return sorted(m for (m, t) in self.operations if t == template)

    # ----------------------------------------------------------------- requests
    def check_query(self, op: Operation, query: dict[str, str]) -> list[str]:
        problems: list[str] = []
        for name, value in query.items():
            spec = op.query.get(name)
            if spec is None:
                problems.append(f"query: unknown parameter {name!r} for {op.method} {op.template}")
                continue
            problems.extend(self._check_query_value(spec["schema"], value, f"query.{name}"))
        for name, spec in op.query.items():
            if spec["required"] and name not in query:
                problems.append(f"query: missing required parameter {name!r}")
        return problems

    def _check_query_value(self, schema: dict[str, Any], value: str, path: str) -> list[str]:
        schema = self.resolve(schema)
        types = _types(schema)
        if "boolean" in types:
            if value.lower() in ("true", "false", "1", "0"):
                return []
            return [f"{path}: expected a boolean, got {value!r}"]
        if "integer" in types or schema.get("format") == "snowflake" or "pattern" in schema:
            if re.fullmatch(r"-?\d+", value):
                parsed: Any = int(value)
                if "integer" in types:
                    return self.check_value(schema, parsed, path)
                return []
            if "integer" in types:
                return [f"{path}: expected an integer, got {value!r}"]
        return self.check_value(schema, value, path) if "string" in types else []

    def check_body(self, op: Operation, body: Any, *, has_body: bool) -> list[str]:
        """Problems with a JSON body (``has_body`` False when the request carried none)."""
        schema = op.body_schema
        if not has_body:
            return [f"body: {op.method} {op.template} requires a JSON body"] if op.body_required else []
        if schema is None:
            return [f"body: {op.method} {op.template} takes no body"]
        return self.check_value(schema, body, "body")[:_MAX_PROBLEMS]

    def check_response(self, op: Operation, answer: Any) -> list[str]:
        """Problems with an answer of ours (extra fields allowed: Discord adds fields over time)."""
        schema = op.response_schema
        if schema is None:
            return []
        return self.check_value(schema, answer, "response", unknown=False, nested_unknown=False)[
            :_MAX_PROBLEMS
        ]

    # ----------------------------------------------------------------- JSON schema subset
    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/components/schemas/"):
                raise ValueError(f"unsupported $ref {ref}")
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**self.schemas[ref.rsplit("/", 1)[1]], **extra}
        return schema

    def check_value(
        self,
        schema: dict[str, Any],
        value: Any,
        path: str,
        *,
        unknown: bool = True,
        nested_unknown: bool = True,
    ) -> list[str]:
        """Problems with ``value`` against ``schema``; ``unknown`` False skips the unknown-field check at this
        level only (an ``allOf`` branch sees part of the fields: the parent judges them against the union),
        ``nested_unknown`` False below it too (our answers may carry fields the description lacks)."""
        gaps = (
            KNOWN_GAPS.get(schema["$ref"].rsplit("/", 1)[1], frozenset()) if "$ref" in schema else frozenset()
        )
        schema = self.resolve(schema)
        problems: list[str] = []
        for sub in schema.get("allOf", []):
            problems.extend(self.check_value(sub, value, path, unknown=False, nested_unknown=nested_unknown))
        for key in ("oneOf", "anyOf"):
            if key in schema:
                # report the branch of the value's own type (a too-long string nonce is "too long", not
                # "not an integer"), then the one with the fewest problems
                best: list[str] | None = None
                best_key: tuple[bool, bool, int] = (True, True, 1 << 30)
                for sub in schema[key]:
                    errs = self.check_value(sub, value, path, unknown=unknown, nested_unknown=nested_unknown)
                    if not errs:
                        best = []
                        break
                    rank = (
                        any(e.startswith(f"{path}: expected") for e in errs),
                        any(
                            e.startswith((f"{path}.type: must be", f"{path}[")) and "must be" in e
                            for e in errs
                        ),
                        len(errs),
                    )
                    if best is None or rank < best_key:
                        best, best_key = errs, rank
                if best:
                    return problems + best
        problems.extend(
            self._check_own(schema, value, path, unknown=unknown, gaps=gaps, nested_unknown=nested_unknown)
        )
        return problems

    def _check_own(
        self,
        schema: dict[str, Any],
        value: Any,
        path: str,
        *,
        unknown: bool = True,
        gaps: frozenset[str] = frozenset(),
        nested_unknown: bool = True,
    ) -> list[str]:
        nu = nested_unknown
        types = _types(schema)
        if types and not _type_ok(types, value, schema):
            return [f"{path}: expected {'/'.join(sorted(types))}, got {_json_type(value)}"]
        if value is None:
            return []
        problems: list[str] = []
        if "const" in schema and value != schema["const"]:
            problems.append(f"{path}: must be {schema['const']!r}, got {value!r}")
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"{path}: must be one of {schema['enum']}, got {value!r}")
        if isinstance(value, str):
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                problems.append(
                    f"{path}: must be {schema['maxLength']} or fewer in length (got {len(value)})"
                )
            if "minLength" in schema and len(value) < schema["minLength"]:
                problems.append(f"{path}: must be {schema['minLength']} or more in length (got {len(value)})")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                problems.append(f"{path}: does not match {schema['pattern']}")
            if schema.get("format") == "date-time" and not _is_datetime(value):
                problems.append(f"{path}: not an ISO8601 timestamp: {value!r}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                problems.append(f"{path}: must be at least {schema['minimum']} (got {value})")
            if "maximum" in schema and value > schema["maximum"]:
                problems.append(f"{path}: must be at most {schema['maximum']} (got {value})")
        elif isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                problems.append(f"{path}: must have {schema['maxItems']} or fewer items (got {len(value)})")
            if "minItems" in schema and len(value) < schema["minItems"]:
                problems.append(f"{path}: must have {schema['minItems']} or more items (got {len(value)})")
            if "items" in schema:
                for i, item in enumerate(value):
                    problems.extend(
                        self.check_value(schema["items"], item, f"{path}[{i}]", unknown=nu, nested_unknown=nu)
                    )
        elif isinstance(value, dict):
            props = self._properties(schema)
            for name in schema.get("required", []):
                if name not in value:
                    problems.append(f"{path}.{name}: this field is required")
            additional = schema.get("additionalProperties")
            if "maxProperties" in schema and len(value) > schema["maxProperties"]:
                problems.append(f"{path}: must have {schema['maxProperties']} or fewer properties")
            for name, item in value.items():
                if name in props:
                    problems.extend(
                        self.check_value(props[name], item, f"{path}.{name}", unknown=nu, nested_unknown=nu)
                    )
                elif isinstance(additional, dict):
                    problems.extend(
                        self.check_value(additional, item, f"{path}.{name}", unknown=nu, nested_unknown=nu)
                    )
                elif unknown and (props or additional is False) and name not in gaps:
                    problems.append(f"{path}.{name}: unknown field")
        return problems

    def _properties(self, schema: dict[str, Any]) -> dict[str, Any]:
        props = dict(schema.get("properties", {}))
        for sub in schema.get("allOf", []):
            props.update(self._properties(self.resolve(sub)))
        return props


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def _type_ok(types: set[str], value: Any, schema: dict[str, Any]) -> bool:
    if value is None:
        return "null" in types
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        if "integer" in types or "number" in types:
            return True
        # snowflakes are strings in the description; Discord also takes them as JSON integers
        return (
            "string" in types and (schema.get("format") == "snowflake" or "pattern" in schema) and value >= 0
        )
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list):
        return "array" in types
    if isinstance(value, dict):
        return "object" in types
    return False


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def find_spec_path() -> Path:
    """``tests/fakes/specs/discord-openapi.json``: the repository's own copy, never a file outside it."""
    return SPECS_DIR / SPEC_FILE


@functools.lru_cache(maxsize=4)
def load_spec(path: str | None = None) -> DiscordApiSpec:
    with open(path or find_spec_path(), encoding="utf-8") as fh:
        return DiscordApiSpec(json.load(fh))
