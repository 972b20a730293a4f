"""What Slack's Web API accepts: methods and their arguments (from the vendored OpenAPI description) and the
Block Kit limits Slack enforces. Pure functions, used by the Slack emulator (``tests/fakes/slack.py``).

The description (``tests/fakes/specs/slack-web-openapi-v2.json``, slackapi/slack-api-specs 1.7.0) dates from
2021: it lacks a few arguments that slack_sdk 3.47 sends and Slack accepts today (message ``metadata``,
``markdown_text``, ``interactivity_pointer``, token rotation...) and a method or two (``apps.connections.open``,
Socket Mode, 2021). Those are listed explicitly in :data:`KNOWN_GAPS`, each with the reason, so an argument no
one has reviewed is still caught.

Arguments arrive as a form (``application/x-www-form-urlencoded``: everything a string, JSON structures
encoded as strings, booleans as ``1``/``0``/``true``/``false``), as a JSON body (values with their JSON
types), or as query parameters; Slack accepts them all for every method. :func:`check_params` judges the
merged arguments and returns them normalised (JSON strings of structured arguments parsed, booleans and
integers coerced).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "JSON_ARGUMENTS",
    "KNOWN_GAPS",
    "MethodSpec",
    "ParamSpec",
    "SlackSpec",
    "block_problems",
    "event_problems",
    "load_spec",
    "message_problems",
    "view_problems",
]

SPEC_PATH = Path(__file__).parent / "specs" / "slack-web-openapi-v2.json"

#: Arguments whose value is a JSON structure: a string holding JSON in a form, the structure itself in a JSON
#: body (the description types them all ``string``, which is what a form carries).
JSON_ARGUMENTS = frozenset({"blocks", "attachments", "view", "metadata", "unfurls"})
#: ... and those that are JSON in one method only (``users`` is a comma-separated list elsewhere).
_JSON_IN = {
    ("calls.add", "users"),
    ("calls.participants.add", "users"),
    ("calls.participants.remove", "users"),
}

#: Arguments (and methods) Slack accepts that the 2021 description lacks, with why: {method: {arg: type}}.
#: A method absent from the description is described here completely ("token" is implied).
KNOWN_GAPS: dict[str, dict[str, str]] = {
    # message metadata (2022) and the markdown block's shortcut (2025): slack_sdk sends both when given
    "chat.postMessage": {"metadata": "string", "markdown_text": "string"},
    "chat.update": {
        "metadata": "string",
        "markdown_text": "string",
        "reply_broadcast": "boolean",  # slack_sdk's chat_update signature has it (thread broadcasts)
        "file_ids": "string",
    },
    "chat.postEphemeral": {"markdown_text": "string"},
    # "Do not create a direct message ... see if there is an existing dm" (docs.slack.dev, conversations.open)
    "conversations.open": {"prevent_creation": "boolean"},
    # views.* accept an interactivity_pointer instead of a trigger_id (2021+); slack_sdk always offers it
    "views.open": {"interactivity_pointer": "string"},
    "views.push": {"interactivity_pointer": "string"},
    # token rotation (2021): slack_sdk's oauth_v2_access passes these when refreshing
    "oauth.v2.access": {"grant_type": "string", "refresh_token": "string"},
    # Socket Mode (2021) postdates the description: the whole method is described here
    "apps.connections.open": {},
}

#: Arguments every method accepts: ``team_id`` picks the workspace for org-wide (Enterprise Grid) installs;
#: Bolt's per-request client sends it on every call (slack_bolt's context client sets it as a default param).
UNIVERSAL_ARGUMENTS: dict[str, str] = {"team_id": "string"}

#: Methods of KNOWN_GAPS the description lacks entirely, and the HTTP verb slack_sdk uses for them.
_EXTRA_METHODS = {"apps.connections.open": "post"}

# Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks and .../block-elements, 2026)
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELD = 2000
MAX_SECTION_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_ID = 255  # action_id, block_id, callback_id, external_id
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
MAX_INPUT_LABEL = 2000
MAX_PLAIN_TEXT_INPUT = 3000

_BLOCK_TYPES = frozenset(
    {
        "section",
        "header",
        "divider",
        "context",
        "actions",
        "image",
        "input",
        "rich_text",
        "call",
        "file",
        "video",
        "markdown",
        "context_actions",
    }
)
_INTERACTIVE = frozenset(
    {
        "button",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
        "multi_external_select",
        "overflow",
        "datepicker",
        "timepicker",
        "datetimepicker",
        "checkboxes",
        "radio_buttons",
        "plain_text_input",
        "number_input",
        "email_text_input",
        "url_text_input",
        "rich_text_input",
        "image",
    }
)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # "string" | "boolean" | "integer" | "number"
    required: bool


@dataclass(frozen=True)
class MethodSpec:
    name: str
    verb: str  # the verb of the description ("get"/"post"); Slack accepts both for every method
    params: dict[str, ParamSpec]
    errors: frozenset[str]  # the documented error codes (empty when the description has none)


class SlackSpec:
    """The Web API methods of the description plus :data:`KNOWN_GAPS`."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.version: str = raw["info"]["version"]
        self.methods: dict[str, MethodSpec] = {}
        self._definitions: dict[str, Any] = raw.get("definitions", {})
        self._responses: dict[str, dict[str, Any]] = {}
        for path, ops in raw["paths"].items():
            name = path.lstrip("/")
            for verb, op in ops.items():
                params = {
                    p["name"]: ParamSpec(p["name"], p.get("type", "string"), bool(p.get("required")))
                    for p in op.get("parameters", [])
                }
                error = op.get("responses", {}).get("default", {}).get("schema", {}).get("properties", {})
                errors = frozenset(error.get("error", {}).get("enum", []))
                self.methods[name] = MethodSpec(name, verb, params, errors)
                ok_schema = op.get("responses", {}).get("200", {}).get("schema")
                if isinstance(ok_schema, dict):
                    self._responses[name] = ok_schema
        for name, extra in KNOWN_GAPS.items():
            base = self.methods.get(name) or MethodSpec(
                name, _EXTRA_METHODS[name], {"token": ParamSpec("token", "string", True)}, frozenset()
            )
            params = dict(base.params)
            for arg, typ in extra.items():
                params[arg] = ParamSpec(arg, typ, False)
            self.methods[name] = MethodSpec(name, base.verb, params, base.errors)

    def response_problems(self, method: str, body: dict[str, Any]) -> list[str]:
        """Required fields of the success answer (and of the objects it holds, two levels down) that ``body``
        lacks: a check of the emulator's own answers against the description."""
        schema = self._responses.get(method)
        return self._missing(schema, body, method, depth=3) if schema else []

    def _missing(self, schema: dict[str, Any], value: Any, where: str, depth: int) -> list[str]:
        if "$ref" in schema:
            schema = self._definitions.get(schema["$ref"].rsplit("/", 1)[-1], {})
        if depth == 0 or not isinstance(value, dict) or schema.get("type") not in (None, "object"):
            return []
        problems = [f"{where}: no {key!r}" for key in schema.get("required", []) if key not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value and isinstance(sub, dict):
                problems += self._missing(sub, value[key], f"{where}.{key}", depth - 1)
        return problems

    def check_params(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Judge the arguments of one call (the token excluded: it travels in the Authorization header).

        Returns the normalised arguments and the problems: unknown argument, missing required one, wrong type.
        """
        spec = self.methods[method]
        problems: list[str] = []
        out: dict[str, Any] = {}
        for name, value in params.items():
            p = spec.params.get(name)
            if p is None and name in UNIVERSAL_ARGUMENTS:
                p = ParamSpec(name, UNIVERSAL_ARGUMENTS[name], False)
            if p is None:
                problems.append(f"unknown argument {name!r} (not in Slack's description of {method})")
                out[name] = value
                continue
            coerced, problem = _coerce(name, p.type, value, (method, name) in _JSON_IN)
            if problem:
                problems.append(problem)
            out[name] = coerced
        for p in spec.params.values():
            if p.required and p.name != "token" and p.name not in params:
                problems.append(f"missing required argument {p.name!r}")
        return out, problems


def _coerce(name: str, typ: str, value: Any, json_arg: bool = False) -> tuple[Any, str | None]:
    if name in JSON_ARGUMENTS or json_arg:
        if isinstance(value, str):
            try:
                return json.loads(value), None
            except ValueError:
                return value, f"{name!r} is not valid JSON: {value[:80]!r}"
        if isinstance(value, (list, dict)):
            return value, None
        return value, f"{name!r} must be a JSON array/object, got {type(value).__name__}"
    if typ == "boolean":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.lower() in ("1", "0", "true", "false"):
            return value.lower() in ("1", "true"), None
        return value, f"{name!r} must be a boolean, got {value!r}"
    if typ == "number":
        # the description types some timestamps ("ts" of chat.delete) as numbers: Slack takes "1712.000100";
        # the value is kept as sent, since a float would lose the ts's exact digits
        if isinstance(value, bool):
            return value, f"{name!r} must be a number, got a boolean"
        try:
            float(value)
        except (TypeError, ValueError):
            return value, f"{name!r} must be a number, got {value!r}"
        return value, None
    if typ == "integer":
        if isinstance(value, bool):
            return value, f"{name!r} must be an integer, got a boolean"
        if isinstance(value, int):
            return value, None
        if isinstance(value, str):
            try:
                return int(value), None
            except ValueError:
                pass
        return value, f"{name!r} must be an integer, got {value!r}"
    # "string": Slack takes JSON numbers for string arguments too (ts, ids), but never objects
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value), None
    return value, f"{name!r} must be a string, got {type(value).__name__}"


EVENTS_PATH = Path(__file__).parent / "specs" / "slack-events-api-asyncapi.json"


@lru_cache(maxsize=1)
def _event_wrapper() -> dict[str, Any]:
    with open(EVENTS_PATH, encoding="utf-8") as f:
        wrapper: dict[str, Any] = json.load(f)["components"]["schemas"]["GenericEventWrapper"]
    return wrapper


def event_problems(payload: dict[str, Any]) -> list[str]:
    """Required fields of the Events API envelope (and of its ``event``) that ``payload`` lacks, from the
    vendored AsyncAPI description: a check of the emulator's own deliveries."""
    wrapper = _event_wrapper()
    problems = [f"envelope: no {key!r}" for key in wrapper.get("required", []) if key not in payload]
    event_schema = wrapper["properties"]["event"]
    event = payload.get("event")
    if isinstance(event, dict):
        problems += [f"event: no {key!r}" for key in event_schema.get("required", []) if key not in event]
    return problems


@lru_cache(maxsize=4)
def load_spec(path: str | None = None) -> SlackSpec:
    """The description, parsed once per process (it is 1.5 MB)."""
    with open(path or SPEC_PATH, encoding="utf-8") as f:
        return SlackSpec(json.load(f))


# --------------------------------------------------------------------------- Block Kit
def _text_len(obj: Any) -> int:
    return len(obj.get("text", "")) if isinstance(obj, dict) else 0


def _check_text_object(where: str, obj: Any, problems: list[str], *, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        problems.append(f"{where}: not a text object: {obj!r:.80}")
        return
    if plain_only and obj["type"] != "plain_text":
        problems.append(f"{where}: must be plain_text")
    if not isinstance(obj.get("text"), str) or not obj["text"]:
        problems.append(f"{where}: text must be a non-empty string")


def _check_element(where: str, el: Any, problems: list[str], action_ids: set[str]) -> None:
    if not isinstance(el, dict) or "type" not in el:
        problems.append(f"{where}: not an element")
        return
    kind = el["type"]
    if kind not in _INTERACTIVE and kind not in ("mrkdwn", "plain_text"):
        problems.append(f"{where}: unknown element type {kind!r}")
    aid = el.get("action_id")
    if aid is not None:
        if not isinstance(aid, str) or len(aid) > MAX_ID:
            problems.append(f"{where}: action_id longer than {MAX_ID}")
        elif aid in action_ids:
            problems.append(f"{where}: duplicate action_id {aid!r} in the same block")
        action_ids.add(str(aid))
    if kind == "button":
        _check_text_object(f"{where}.text", el.get("text"), problems, plain_only=True)
        if _text_len(el.get("text")) > MAX_BUTTON_TEXT:
            problems.append(f"{where}: button text longer than {MAX_BUTTON_TEXT}")
        if len(str(el.get("value", ""))) > MAX_BUTTON_VALUE:
            problems.append(f"{where}: button value longer than {MAX_BUTTON_VALUE}")
        if len(str(el.get("url", ""))) > MAX_BUTTON_URL:
            problems.append(f"{where}: button url longer than {MAX_BUTTON_URL}")
        if el.get("style") not in (None, "primary", "danger"):
            problems.append(f"{where}: button style must be primary or danger")
    options = el.get("options")
    if options is not None:
        if not isinstance(options, list) or not options or len(options) > MAX_OPTIONS:
            problems.append(f"{where}: options must be 1..{MAX_OPTIONS} items")
        else:
            for j, opt in enumerate(options):
                if _text_len(opt.get("text")) > MAX_OPTION_TEXT:
                    problems.append(f"{where}.options[{j}]: text longer than {MAX_OPTION_TEXT}")
                if len(str(opt.get("value", ""))) > MAX_OPTION_VALUE:
                    problems.append(f"{where}.options[{j}]: value longer than {MAX_OPTION_VALUE}")
    if kind == "plain_text_input" and int(el.get("max_length") or 0) > MAX_PLAIN_TEXT_INPUT:
        problems.append(f"{where}: max_length above {MAX_PLAIN_TEXT_INPUT}")


def block_problems(blocks: Any, *, max_blocks: int, surface: str) -> list[str]:
    """What Slack would refuse in a ``blocks`` array (``surface``: "message", "modal" or "home")."""
    problems: list[str] = []
    if not isinstance(blocks, list):
        return [f"blocks must be an array, got {type(blocks).__name__}"]
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks: at most {max_blocks} in a {surface}")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            problems.append(f"{where}: unknown block {block!r:.80}")
            continue
        kind = block["type"]
        bid = block.get("block_id")
        if bid is not None:
            if not isinstance(bid, str) or len(bid) > MAX_ID:
                problems.append(f"{where}: block_id longer than {MAX_ID}")
            elif bid in block_ids:
                problems.append(f"{where}: duplicate block_id {bid!r}")
            block_ids.add(str(bid))
        if kind == "input" and surface == "message":
            problems.append(f"{where}: input blocks are for modals and App Home only")
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                _check_text_object(f"{where}.text", block["text"], problems)
                if _text_len(block["text"]) > MAX_SECTION_TEXT:
                    problems.append(f"{where}: section text longer than {MAX_SECTION_TEXT}")
            fields = block.get("fields") or []
            if len(fields) > MAX_SECTION_FIELDS:
                problems.append(f"{where}: more than {MAX_SECTION_FIELDS} fields")
            for j, fld in enumerate(fields):
                _check_text_object(f"{where}.fields[{j}]", fld, problems)
                if _text_len(fld) > MAX_SECTION_FIELD:
                    problems.append(f"{where}.fields[{j}]: longer than {MAX_SECTION_FIELD}")
            if "accessory" in block:
                _check_element(f"{where}.accessory", block["accessory"], problems, action_ids)
        elif kind == "header":
            _check_text_object(f"{where}.text", block.get("text"), problems, plain_only=True)
            if _text_len(block.get("text")) > MAX_HEADER_TEXT:
                problems.append(f"{where}: header text longer than {MAX_HEADER_TEXT}")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_ACTIONS_ELEMENTS:
                problems.append(f"{where}: actions need 1..{MAX_ACTIONS_ELEMENTS} elements")
            for j, el in enumerate(elements):
                _check_element(f"{where}.elements[{j}]", el, problems, action_ids)
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}: context needs 1..{MAX_CONTEXT_ELEMENTS} elements")
        elif kind == "input":
            _check_text_object(f"{where}.label", block.get("label"), problems, plain_only=True)
            if _text_len(block.get("label")) > MAX_INPUT_LABEL:
                problems.append(f"{where}: label longer than {MAX_INPUT_LABEL}")
            _check_element(f"{where}.element", block.get("element"), problems, action_ids)
    return problems


def message_problems(text: Any, blocks: Any) -> tuple[str | None, list[str]]:
    """Slack's error for a message's ``text``/``blocks`` (``no_text``, ``msg_too_long``, ``invalid_blocks``)
    and the detail, or ``(None, [])``."""
    if blocks is not None:
        problems = block_problems(blocks, max_blocks=MAX_MESSAGE_BLOCKS, surface="message")
        if problems:
            return "invalid_blocks", problems
    if isinstance(text, str) and len(text) > MAX_MESSAGE_TEXT:
        return "msg_too_long", [f"text is {len(text)} characters, Slack takes at most {MAX_MESSAGE_TEXT}"]
    if not text and not blocks:
        return "no_text", ["neither text nor blocks"]
    return None, []


def view_problems(view: Any) -> list[str]:
    """What Slack would refuse in a view (views.open/push/update/publish answer ``invalid_arguments``)."""
    if not isinstance(view, dict):
        return [f"view must be an object, got {type(view).__name__}"]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        return [f"view type must be modal or home, got {kind!r}"]
    problems = block_problems(view.get("blocks", []), max_blocks=MAX_VIEW_BLOCKS, surface=kind)
    if kind == "modal":
        for key in ("title", "submit", "close"):
            if key in view or key == "title":
                _check_text_object(f"view.{key}", view.get(key), problems, plain_only=True)
                if _text_len(view.get(key)) > MAX_VIEW_TITLE:
                    problems.append(f"view.{key} longer than {MAX_VIEW_TITLE}")
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks", []))
        if has_input and "submit" not in view:
            problems.append("a modal with input blocks needs a submit button")
    if len(str(view.get("private_metadata", ""))) > MAX_PRIVATE_METADATA:
        problems.append(f"private_metadata longer than {MAX_PRIVATE_METADATA}")
    for key in ("callback_id", "external_id"):
        if len(str(view.get(key, ""))) > MAX_ID:
            problems.append(f"{key} longer than {MAX_ID}")
    return problems
