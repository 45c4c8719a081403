"""The caller's home as a request context: Home Assistant's shape (top-level `floors`,
`areas`, `entities`, each entry with `name` and optional `id`, `aliases`, `area`, `floor`,
`domain`; other keys ignored), from a dict or a YAML/JSON file such as Home Assistant's intent
test fixtures."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rnnserve.v1 import rnnserve_pb2 as pb

GROUPS = ("floors", "areas", "entities")
FIELDS = ("id", "area", "floor", "domain")


class ContextError(ValueError):
    """A context that is not Home Assistant's shape; the message names the entry."""


def context_message(home: Mapping[str, Any] | pb.HomeContext) -> pb.HomeContext:
    """A HomeContext message from a dict with `floors`, `areas`, `entities` lists."""
    if isinstance(home, pb.HomeContext):
        return home
    if not isinstance(home, Mapping):
        raise ContextError("a context is a mapping with floors, areas and entities")
    msg = pb.HomeContext()
    for group in GROUPS:
        entries = home.get(group) or []
        if not isinstance(entries, list):
            raise ContextError(f"context {group} must be a list")
        out = getattr(msg, group)
        for n, e in enumerate(entries):
            if not isinstance(e, Mapping) or e.get("name") in (None, ""):
                raise ContextError(f"context {group}[{n}] needs a name")
            entry = out.add(name=str(e["name"]))
            for key in FIELDS:
                if e.get(key) not in (None, ""):
                    setattr(entry, key, str(e[key]))
            aliases = e.get("aliases") or []
            if not isinstance(aliases, list):
                raise ContextError(f"context {group}[{n}].aliases must be a list")
            entry.aliases.extend(str(a) for a in aliases)
    return msg


def read_context(path: str | Path) -> pb.HomeContext:
    """A context file: JSON, or YAML (needs PyYAML) such as Home Assistant's _fixtures.yaml."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            import yaml
        except ImportError:
            raise ContextError(f"{path}: not JSON, and reading YAML needs PyYAML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ContextError(f"{path}: not JSON or YAML ({exc})") from None
    try:
        return context_message(data)
    except ContextError as exc:
        raise ContextError(f"{path}: {exc}") from None
