"""The caller's home as a request context: Home Assistant's shape (top-level `floors`,
`areas`, `entities`, each entry with `name` and optional `id`, `aliases`, `area`, `floor`,
`domain`; other keys ignored), from a dict or a YAML/JSON file such as Home Assistant's intent
test fixtures (names in template syntax expanded, as its test harness reads them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.templates import TemplateError, expand, is_template
from rnnserve.v1 import rnnserve_pb2 as pb

GROUPS = ("floors", "areas", "entities")
FIELDS = ("id", "area", "floor", "domain")


class ContextError(ValueError):
    """A context that is not Home Assistant's shape; the message names the entry."""


@dataclass(frozen=True)
class PreparedContext:
    """A home serialized once (`prepare_context`). A request carrying it sends these bytes as
    they are; the server reads a large context once per distinct byte string, so a home sent
    with every request costs neither side a conversion or a parse after the first."""

    message: pb.HomeContext
    wire: bytes  # the message's serialization

    def field(self, number: int) -> bytes:
        """The context as field `number` of a request: tag, length, bytes."""
        return _varint(number << 3 | 2) + _varint(len(self.wire)) + self.wire


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def prepare_context(home: Mapping[str, Any] | pb.HomeContext | PreparedContext) -> PreparedContext:
    """The context checked and serialized once, to send with many requests."""
    if isinstance(home, PreparedContext):
        return home
    msg = context_message(home)
    return PreparedContext(msg, msg.SerializeToString())


Home = Mapping[str, Any] | pb.HomeContext | PreparedContext


def context_message(home: Home, *, templates: bool = False) -> pb.HomeContext:
    """A HomeContext message from a dict with `floors`, `areas`, `entities` lists (or tuples).
    Names, ids and aliases are text (a number stands for its digits); `aliases` is a list of
    them or one of them. `templates`: a name or alias in template syntax stands for every
    sentence it expands to (client/templates.py), as in Home Assistant's test fixtures."""
    if isinstance(home, pb.HomeContext):
        return home
    if isinstance(home, PreparedContext):
        return home.message
    if not isinstance(home, Mapping):
        raise ContextError("a context is a mapping with floors, areas and entities")
    if home and not any(group in home for group in GROUPS):  # a misspelt group, say
        keys = ", ".join(sorted(map(str, home))[:5])
        raise ContextError(f"a context has floors, areas or entities; this one has {keys}")
    msg = pb.HomeContext()
    for group in GROUPS:
        entries = home.get(group) or []
        if not isinstance(entries, list | tuple):
            raise ContextError(f"context {group} must be a list")
        out = getattr(msg, group)
        for n, e in enumerate(entries):
            where = f"{group}[{n}]"
            if not isinstance(e, Mapping) or e.get("name") in (None, ""):
                raise ContextError(f"context {where} needs a name")
            try:
                _entry(out.add(), e, where, templates)
            except UnicodeEncodeError:
                raise ContextError(f"context {where} holds text that is not UTF-8") from None
    return msg


def _entry(entry: pb.ContextEntry, e: Mapping[str, Any], where: str, templates: bool) -> None:
    """Fill one ContextEntry from its mapping."""
    for key in FIELDS:
        if e.get(key) not in (None, ""):
            setattr(entry, key, _text(e[key], f"{where}.{key}"))
    aliases = e.get("aliases")
    if aliases is None:
        aliases = []
    elif isinstance(aliases, set | frozenset):  # as Home Assistant's own entries hold them
        aliases = sorted(aliases, key=str)
    elif not isinstance(aliases, list | tuple):
        aliases = [aliases]  # one alias
    names = [(_text(e["name"], f"{where}.name"), f"{where}.name")]
    for k, alias in enumerate(aliases):
        if alias is None:
            raise ContextError(f"context {where}.aliases[{k}] is empty")
        names.append((_text(alias, f"{where}.aliases[{k}]"), f"{where}.aliases[{k}]"))
    said: list[str] = []
    for text, at in names:
        if templates and is_template(text):
            said += [t for t in _expanded(text, at) if t not in said]
        else:
            said.append(text)
    entry.name = said[0]
    entry.aliases.extend(said[1:])


def _expanded(text: str, where: str) -> list[str]:
    """The sentences of a name or alias written as a template."""
    try:
        sentences = expand(text)
    except TemplateError as exc:
        raise ContextError(f"context {where} {text!r} is not a template: {exc}") from None
    if not sentences:
        raise ContextError(f"context {where} {text!r} expands to nothing")
    return sentences


def _text(value: Any, where: str) -> str:
    """A name, alias or id: a string, or a number as its digits (YAML and JSON read `2` as one)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    kind = {bool: "true or false", list: "a list", tuple: "a list"}.get(type(value))
    kind = kind or ("a mapping" if isinstance(value, Mapping) else type(value).__name__)
    raise ContextError(f"context {where} must be text, not {kind}")


def read_context(path: str | Path) -> pb.HomeContext:
    """A context file: JSON, or YAML (needs PyYAML) such as Home Assistant's _fixtures.yaml."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ContextError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ContextError(f"{path} is not UTF-8 text") from None
    try:  # numbers as written: a name 1.10 is "1.10", not "1.1"
        data = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
    except json.JSONDecodeError:
        try:
            import yaml
        except ImportError:
            raise ContextError(f"{path}: not JSON, and reading YAML needs PyYAML") from None
        try:
            data = yaml.load(text, Loader=_text_loader(yaml))  # a SafeLoader
        except yaml.YAMLError as exc:
            raise ContextError(f"{path}: not JSON or YAML ({_yaml_problem(exc)})") from None
    if data == {}:
        raise ContextError(f"{path}: a context has floors, areas or entities; this one is empty")
    try:
        return context_message(data, templates=True)
    except ContextError as exc:
        raise ContextError(f"{path}: {exc}") from None


def _text_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader with every plain scalar read as the text written, null and merge
    keys (`<<`) apart: a name `Off`, `007` or `1.10` is that text, not false, 7 or 1.1."""
    keep = ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
    resolvers = {
        first: [(tag, regexp) for tag, regexp in rules if tag in keep]
        for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return type("TextLoader", (yaml.SafeLoader,), {"yaml_implicit_resolvers": resolvers})


def _yaml_problem(exc: Exception) -> str:
    """A YAML error in one line: where it is and what is wrong."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "malformed"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())
