"""What the Telegram Bot API accepts: request validation against the official description, HTML parsing.

Used by the Telegram emulator in ``tests/fakes/telegram.py``. The description is the machine-readable
``tests/fakes/specs/telegram-bot-api.json`` (Bot API 10.1; source and licence in ``tests/fakes/specs/README.md``),
loaded lazily once per process.

Two things live here:

- :class:`BotApiSpec` checks a request the way the Bot API server parses it: method known, required parameters
  present, no unknown parameters, each value of a documented type (form values are strings: integers and
  booleans are parsed, objects and arrays are JSON, validated recursively against the described types).
- :func:`parse_html` turns ``parse_mode=HTML`` text into plain text and ``MessageEntity`` dicts, raising
  :class:`EntityParseError` with Telegram's wording for what the real server refuses.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPEC_FILE = "telegram-bot-api.json"
#: the vendored API descriptions: inside the repository, so that a clone anywhere runs its tests
SPECS_DIR = Path(__file__).resolve().parent / "specs"

_PRIMITIVES = {"Integer", "String", "Boolean", "Float", "InputFile", "True"}
_INT_RE = re.compile(r"^[+-]?\d+$")
_DISCRIMINATOR_RE = re.compile(r'(?:must be|always)\s+["“]?([a-z_]+)')


def find_spec_path() -> Path:
    """``tests/fakes/specs/telegram-bot-api.json``: the repository's own copy, never a file outside it."""
    return SPECS_DIR / SPEC_FILE


@dataclass(frozen=True)
class FieldSpec:
    name: str
    types: tuple[str, ...]
    required: bool
    description: str = ""


@dataclass
class ObjectSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    subtypes: tuple[str, ...] = ()


@dataclass
class MethodSpec:
    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    returns: tuple[str, ...] = ()


class _Skip:
    """Marker for a value that should be dropped from the coerced parameters (e.g. unparsable)."""


class BotApiSpec:
    """The Bot API description with checks for requests (form-encoded, multipart or JSON)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.version: str = str(raw.get("version", "?"))
        self.methods: dict[str, MethodSpec] = {}
        self._methods_lower: dict[str, str] = {}
        self.types: dict[str, ObjectSpec] = {}
        for name, m in raw.get("methods", {}).items():
            fields = {
                f["name"]: FieldSpec(
                    f["name"], tuple(f["types"]), bool(f["required"]), f.get("description", "")
                )
                for f in m.get("fields", [])
            }
            self.methods[name] = MethodSpec(name, fields, tuple(m.get("returns", [])))
            self._methods_lower[name.lower()] = name
        for name, t in raw.get("types", {}).items():
            fields = {
                f["name"]: FieldSpec(
                    f["name"], tuple(f["types"]), bool(f["required"]), f.get("description", "")
                )
                for f in t.get("fields", [])
            }
            self.types[name] = ObjectSpec(name, fields, tuple(t.get("subtypes", [])))

    # ----------------------------------------------------------------- lookups
    def method(self, name: str) -> MethodSpec | None:
        """The method's description; Telegram matches method names case-insensitively."""
        canonical = self._methods_lower.get(name.lower())
        return self.methods[canonical] if canonical else None

    def discriminator(self, type_name: str) -> tuple[str, str] | None:
        """For a subtype like ``BotCommandScopeChat``: ``("type", "chat")``."""
        spec = self.types.get(type_name)
        if spec is None or not spec.fields:
            return None
        first = next(iter(spec.fields.values()))
        m = _DISCRIMINATOR_RE.search(first.description)
        if first.types == ("String",) and m:
            return first.name, m.group(1)
        return None

    def required_fields(self, type_name: str) -> list[str]:
        spec = self.types.get(type_name)
        return [f.name for f in spec.fields.values() if f.required] if spec else []

    # ----------------------------------------------------------------- requests
    def check_request(
        self, method_name: str, params: dict[str, Any], files: set[str] | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """Validate the raw parameters of one request.

        ``params`` holds form values as strings (as PTB sends them: strings verbatim, everything else JSON);
        JSON-body values are converted to that form first, as the Bot API server does. ``files`` names the
        multipart parts that were uploaded as files. Returns the coerced parameters (ints, bools, parsed JSON)
        and a list of problems (empty when the request is one Telegram accepts).
        """
        spec = self.method(method_name)
        if spec is None:
            return dict(params), [f"unknown method {method_name!r}"]
        files = files or set()
        problems: list[str] = []
        coerced: dict[str, Any] = {}
        for name, value in params.items():
            fspec = spec.fields.get(name)
            if fspec is None:
                # The real server ignores unknown parameters silently: a typo there is a silent bug.
                problems.append(f"unknown parameter {name!r} for {spec.name}")
                continue
            result, errs = self._coerce_form(fspec.types, value, name, is_file=name in files)
            problems.extend(errs)
            if not isinstance(result, _Skip):
                coerced[name] = result
        for fspec in spec.fields.values():
            if fspec.required and fspec.name not in params:
                problems.append(f"missing required parameter {fspec.name!r} for {spec.name}")
        return coerced, problems

    def _coerce_form(
        self, types: tuple[str, ...], value: Any, path: str, *, is_file: bool
    ) -> tuple[Any, list[str]]:
        if is_file:
            if any(t == "InputFile" for t in types):
                return value, []
            return _Skip(), [f"{path}: a file was uploaded but the parameter is of type {' or '.join(types)}"]
        if not isinstance(value, str):
            value = json.dumps(value) if not isinstance(value, bytes) else value.decode("utf-8", "replace")
        errors: list[str] = []
        # Try the simple types in the order the server would: Integer, Float, Boolean, String, then JSON.
        for t in types:
            if t == "Integer" and _INT_RE.match(value.strip()):
                return int(value), []
        for t in types:
            if t == "Float":
                try:
                    return float(value), []
                except ValueError:
                    pass
        for t in types:
            if t in ("Boolean", "True"):
                low = value.strip().lower()
                if low in ("true", "1"):
                    return True, []
                if low in ("false", "0"):
                    return False, []
        for t in types:
            if t in ("String", "InputFile"):
                return value, []
        complex_types = [t for t in types if t not in _PRIMITIVES]
        if complex_types:
            try:
                parsed = json.loads(value)
            except ValueError:
                return _Skip(), [f"{path}: can't parse JSON for {' or '.join(complex_types)}: {value[:80]!r}"]
            best: list[str] | None = None
            for t in complex_types:
                errs = self.check_value(t, parsed, path)
                if not errs:
                    return parsed, []
                if best is None or len(errs) < len(best):
                    best = errs
            return parsed, best or []
        errors.append(f"{path}: expected {' or '.join(types)}, got {value[:80]!r}")
        return _Skip(), errors

    # ----------------------------------------------------------------- objects
    def check_value(self, type_expr: str, value: Any, path: str) -> list[str]:
        """Check a JSON value against a type expression like ``Array of Array of InlineKeyboardButton``."""
        if type_expr.startswith("Array of "):
            if not isinstance(value, list):
                return [f"{path}: expected {type_expr}, got {type(value).__name__}"]
            inner = type_expr[len("Array of ") :]
            errors: list[str] = []
            for i, item in enumerate(value):
                errors.extend(self.check_value(inner, item, f"{path}[{i}]"))
            return errors
        if type_expr == "Integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return []
            if isinstance(value, str) and _INT_RE.match(value):
                return []
            return [f"{path}: expected Integer, got {value!r}"]
        if type_expr == "Float":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return []
            return [f"{path}: expected Float, got {value!r}"]
        if type_expr in ("Boolean", "True"):
            return [] if isinstance(value, bool) else [f"{path}: expected Boolean, got {value!r}"]
        if type_expr == "String":
            return [] if isinstance(value, str) else [f"{path}: expected String, got {value!r}"]
        if type_expr == "InputFile":
            return [] if isinstance(value, str) else [f"{path}: expected an attach:// name or file id"]
        spec = self.types.get(type_expr)
        if spec is None:
            return []  # a type the description does not detail: accept
        if spec.subtypes:
            return self._check_union(spec, value, path)
        return self.check_object(type_expr, value, path)

    def _check_union(self, spec: ObjectSpec, value: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected {spec.name} object, got {type(value).__name__}"]
        best: list[str] | None = None
        tags: list[str] = []
        for sub in spec.subtypes:
            disc = self.discriminator(sub)
            if disc is not None:
                tags.append(disc[1])
                if value.get(disc[0]) == disc[1]:
                    return self.check_value(sub, value, path)
                continue
            errs = self.check_value(sub, value, path)
            if not errs:
                return []
            if best is None or len(errs) < len(best):
                best = errs
        if best is None and tags:
            return [f"{path}: not a known kind of {spec.name} (expected one of {tags})"]
        return best or [f"{path}: matches no kind of {spec.name}"]

    def check_object(self, type_name: str, value: Any, path: str) -> list[str]:
        spec = self.types[type_name]
        if not isinstance(value, dict):
            return [f"{path}: expected {type_name} object, got {type(value).__name__}"]
        errors: list[str] = []
        disc = self.discriminator(type_name)
        if disc is not None and disc[0] in value and value[disc[0]] != disc[1]:
            errors.append(f"{path}.{disc[0]}: must be {disc[1]!r} for {type_name}")
        for key, item in value.items():
            fspec = spec.fields.get(key)
            if fspec is None:
                errors.append(f"{path}: unknown field {key!r} in {type_name}")
                continue
            alternatives: list[list[str]] = [self.check_value(t, item, f"{path}.{key}") for t in fspec.types]
            if all(alternatives):
                errors.extend(sorted(alternatives, key=lambda errs: len(errs))[0])
        for fspec in spec.fields.values():
            if fspec.required and fspec.name not in value:
                errors.append(f"{path}: missing required field {fspec.name!r} of {type_name}")
        return errors


@functools.cache
def load_spec(path: str | None = None) -> BotApiSpec:
    """Load and cache the Bot API description (once per process and path)."""
    spec_path = Path(path) if path else find_spec_path()
    with spec_path.open(encoding="utf-8") as fh:
        return BotApiSpec(json.load(fh))


# --------------------------------------------------------------------------- text
def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


class EntityParseError(ValueError):
    """``parse_mode`` text that Telegram refuses (``Bad Request: can't parse entities: ...``)."""


_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
    "tg-time": "date_time",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot)|#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6}));")


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    start: int  # UTF-16 offset in the output


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def parse_html(text: str, *, strict_ampersand: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram's HTML subset into (plain text, entities); raise :class:`EntityParseError`.

    Follows the Bot API server (tdlib ``parse_html``): supported tags only, tag names case-insensitive,
    ``&lt; &gt; &amp; &quot;`` and numeric character references decoded. Telegram keeps a lone ``&`` that
    starts no entity; with ``strict_ampersand`` (default) the emulator refuses it, since it means user text
    was not escaped.
    """
    out: list[str] = []
    out_len = 0  # UTF-16 units so far
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)

    def emit(s: str) -> None:
        nonlocal out_len
        out.append(s)
        out_len += utf16_len(s)

    while i < n:
        c = text[i]
        if c == "&":
            m = _HTML_ENTITY_RE.match(text, i)
            if m:
                if m.group(1):
                    emit(_NAMED_ENTITIES[m.group(1)])
                else:
                    code = int(m.group(2)) if m.group(2) else int(m.group(3), 16)
                    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                        raise EntityParseError(
                            f"Invalid character reference at byte offset {_byte_offset(text, i)}"
                        )
                    emit(chr(code))
                i = m.end()
                continue
            if strict_ampersand:
                raise EntityParseError(
                    f"Unescaped '&' at byte offset {_byte_offset(text, i)} (emulator: escape it as &amp;)"
                )
            emit("&")
            i += 1
            continue
        if c != "<":
            emit(c)
            i += 1
            continue
        begin = i
        if i + 1 < n and text[i + 1] == "/":
            end = text.find(">", i + 2)
            if end == -1:
                raise EntityParseError(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            name = text[i + 2 : end].strip().lower()
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            top = stack[-1]
            if name != top.name:
                raise EntityParseError(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{top.name}>", '
                    f'found "</{name}>"'
                )
            stack.pop()
            _close_entity(top, out_len, entities, stack)
            i = end + 1
            continue
        # start tag
        j = i + 1
        while j < n and not text[j].isspace() and text[j] not in "/>":
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
        name = text[i + 1 : j].lower()
        if name not in _TAG_ENTITY:
            raise EntityParseError(
                f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, begin)}'
            )
        attrs: dict[str, str] = {}
        while True:
            while j < n and text[j].isspace():
                j += 1
            if j >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            if text[j] == ">":
                j += 1
                break
            if text[j] == "/":
                raise EntityParseError(
                    f'Unsupported self-closing tag "{name}" at byte offset {_byte_offset(text, j)}'
                )
            k = j
            while k < n and (text[k].isalnum() or text[k] in "-_"):
                k += 1
            attr = text[j:k].lower()
            if not attr:
                raise EntityParseError(
                    f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(text, j)}'
                )
            while k < n and text[k].isspace():
                k += 1
            if k >= n or text[k] != "=":
                raise EntityParseError(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" at byte offset '
                    f"{_byte_offset(text, k)}"
                )
            k += 1
            while k < n and text[k].isspace():
                k += 1
            if k >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            if text[k] in "'\"":
                quote = text[k]
                close = text.find(quote, k + 1)
                if close == -1:
                    raise EntityParseError(
                        f'Unclosed end of attribute value in the tag "{name}" at byte offset '
                        f"{_byte_offset(text, k)}"
                    )
                raw_value = text[k + 1 : close]
                k = close + 1
            else:
                start_v = k
                while k < n and not text[k].isspace() and text[k] != ">":
                    k += 1
                raw_value = text[start_v:k]
            attrs[attr] = _HTML_ENTITY_RE.sub(_decode_entity, raw_value)
            j = k
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(text, begin)}'
            )
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            raise EntityParseError(
                f"Invalid custom emoji identifier specified at byte offset {_byte_offset(text, begin)}"
            )
        if name == "tg-time" and not _INT_RE.match(attrs.get("unix", "")):
            raise EntityParseError(
                f'Tag "tg-time" must have attribute "unix" at byte offset {_byte_offset(text, begin)}'
            )
        stack.append(_OpenTag(name, attrs, out_len))
        i = j
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _decode_entity(m: re.Match[str]) -> str:
    if m.group(1):
        return _NAMED_ENTITIES[m.group(1)]
    return chr(int(m.group(2)) if m.group(2) else int(m.group(3), 16))


def _close_entity(tag: _OpenTag, end: int, entities: list[dict[str, Any]], stack: list[_OpenTag]) -> None:
    length = end - tag.start
    if length <= 0:
        return
    etype = _TAG_ENTITY[tag.name]
    entity: dict[str, Any] = {"type": etype, "offset": tag.start, "length": length}
    if tag.name == "a":
        href = tag.attrs.get("href", "")
        if not href:
            return
        m = re.match(r"^tg://user\?id=(\d+)$", href)
        if m:
            entity = {
                "type": "text_mention",
                "offset": tag.start,
                "length": length,
                "user": {"id": int(m.group(1))},
            }
        else:
            entity["url"] = href
    elif tag.name == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif tag.name == "tg-emoji":
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    elif tag.name == "tg-time":
        entity["unix_time"] = int(tag.attrs["unix"])
        if tag.attrs.get("format"):
            entity["date_time_format"] = tag.attrs["format"]
    elif tag.name == "code" and stack and stack[-1].name == "pre":
        lang = tag.attrs.get("class", "")
        if lang.startswith("language-"):
            # <pre><code class="language-x"> is one "pre" entity with a language, as in Telegram
            stack[-1].attrs["__language"] = lang[len("language-") :]
            return
    elif tag.name == "pre" and tag.attrs.get("__language"):
        entity["language"] = tag.attrs["__language"]
    entities.append(entity)
