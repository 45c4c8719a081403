"""BIO slot tags: decoding per-token tags into entity spans."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelspec.names import OUTSIDE_TAG


@dataclass(frozen=True)
class Entity:
    """A decoded slot: its name and the token span [start, end)."""

    slot: str
    start: int
    end: int


def decode_bio(tags: Sequence[str]) -> list[Entity]:
    """Entities from BIO tags; an I- tag that does not continue its type starts a new entity."""
    out: list[Entity] = []
    cur: str | None = None
    start = 0
    for i, tag in enumerate(list(tags) + [OUTSIDE_TAG]):
        kind, _, name = tag.partition("-")
        continues = kind == "I" and name == cur
        if cur is not None and not continues:
            out.append(Entity(cur, start, i))
            cur = None
        if kind in ("B", "I") and not continues:
            cur, start = name, i
    return out


def slot_names(tags: Sequence[str]) -> list[str]:
    """The slot names that a tag set covers, sorted."""
    return sorted({t[2:] for t in tags if t != OUTSIDE_TAG})
