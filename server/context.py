"""A request's home context: its limits, the match against the utterance, the model's context
features, and which entry a decoded name, area or floor slot names.

The typed API's HomeContext message is read in place (its entries are never copied), once per
request. The name tables of a large context are kept by its exact wire bytes (`PreparedContexts`,
least recently used out): a request sending those bytes again skips reading and checking its
entries; they only ever serve a request that sent the very same context. numpy only; no grpc."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from modelspec.context import (
    AREA,
    CONTEXT_KINDS,
    FLOOR,
    MAX_ALIASES,
    MAX_AREAS,
    MAX_ENTITIES,
    MAX_FLOORS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    NAME,
    ContextMatcher,
    EntryLike,
    HomeContext,
    Match,
    NameTable,
    choose,
    features,
)
from server.decoding import SlotOut, TokenOut
from server.errors import InvalidArgument

if TYPE_CHECKING:
    from server.model import ServedModel

T = TypeVar("T")

LIMITS = {
    FLOOR: ("floors", MAX_FLOORS),
    AREA: ("areas", MAX_AREAS),
    NAME: ("entities", MAX_ENTITIES),
}

Near = tuple[set[str], set[str]]  # the ids of the areas and of the floors an utterance names
NOWHERE: Near = (set(), set())

# A context with at least this many entries is worth keeping prepared (smaller ones are read
# in less time than their wire bytes take to hash).
PREPARE_MIN_ENTRIES = 32


@dataclass(frozen=True)
class RequestContext(HomeContext):
    """A request's context with its wire bytes (empty when too small to keep prepared)."""

    key: bytes = b""


def home_context(msg: Any, key: bytes = b"") -> HomeContext | None:
    """The context of a request (a message with `floors`, `areas`, `entities`), None when it
    has no entries; InvalidArgument when it holds more entries than the limits allow. `key`:
    the message's wire bytes when known (server/context_wire.py)."""
    if msg is None:
        return None
    counts = []
    for kind in CONTEXT_KINDS:
        group, limit = LIMITS[kind]
        n = len(getattr(msg, group))
        if n > limit:
            raise InvalidArgument(f"context has {n} {group}; the limit is {limit}")
        counts.append(n)
    if not any(counts):
        return None
    if sum(counts) < PREPARE_MIN_ENTRIES:
        key = b""
    elif not key:
        key = msg.SerializeToString()
    return RequestContext(msg.floors, msg.areas, msg.entities, key)


class ByBytes(Generic[T]):
    """The last `max_entries` values kept by their byte-string keys (at most `max_bytes` of
    keys in all), least recently used out; thread safe."""

    def __init__(self, max_entries: int = 16, max_bytes: int = 16 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._kept: OrderedDict[bytes, T] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> T | None:
        """The value kept for `key` (now the most recent), or None."""
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
            return found

    def put(self, key: bytes, value: T) -> None:
        """Keep `value` for `key` (a key longer than max_bytes is not kept)."""
        if len(key) > self.max_bytes:
            return
        with self._lock:
            if key not in self._kept:
                self._kept[key] = value
                self._bytes += len(key)
            while len(self._kept) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= len(self._kept.popitem(last=False)[0])


class PreparedContexts:
    """The checked name tables of the last `max_contexts` large contexts a model was sent (at
    most `max_bytes` of their wire bytes in all), by those bytes."""

    def __init__(
        self, matcher: ContextMatcher, max_contexts: int = 16, max_bytes: int = 16 << 20
    ) -> None:
        self.matcher = matcher
        self._tables: ByBytes[list[NameTable]] = ByBytes(max_contexts, max_bytes)

    def tables(self, ctx: HomeContext) -> list[NameTable]:
        """The context's name tables, checked (InvalidArgument for a bad name or alias)."""
        key = getattr(ctx, "key", b"")
        found = self._tables.get(key) if key else None
        if found is not None:
            return found
        tables = []
        for kind in CONTEXT_KINDS:
            entries = ctx.of(kind)
            if len(entries):
                table = self.matcher.table(kind, entries)
                _check(table, entries)
                tables.append(table)
        if key:
            self._tables.put(key, tables)
        return tables


def _check(table: NameTable, entries: Sequence[EntryLike]) -> None:
    """Names and aliases are non-empty, single-line and within MAX_NAME_CHARS; each entry has
    at most MAX_ALIASES aliases and an id of at most MAX_ID_CHARS (an answer repeats the id
    of every slot that names the entry)."""
    texts = table.texts
    chars, at = table.longest_id
    if chars > MAX_ID_CHARS:
        group = LIMITS[table.kind][0]
        raise InvalidArgument(
            f"context.{group}[{at}].id has {chars} characters; the limit is {MAX_ID_CHARS}"
        )
    if len(table.lows) != len(texts):  # a text held a line break
        k = next(k for k, t in enumerate(texts) if "\n" in t or "\r" in t)
        raise InvalidArgument(f"context.{table.where(k, entries)} holds a line break")
    if texts and (min(map(len, texts)) == 0 or max(map(len, texts)) > MAX_NAME_CHARS):
        k = next(k for k, t in enumerate(texts) if not t or len(t) > MAX_NAME_CHARS)
        where = table.where(k, entries)
        if not texts[k]:
            raise InvalidArgument(f"context.{where} is empty")
        raise InvalidArgument(
            f"context.{where} has {len(texts[k])} characters; the limit is {MAX_NAME_CHARS}"
        )
    if len(texts) > table.entries:
        counts = np.bincount(np.asarray(table.owners[table.entries :]), minlength=1)
        if counts.max() > MAX_ALIASES:
            owner = int(counts.argmax())
            group = LIMITS[table.kind][0]
            raise InvalidArgument(
                f"context.{group}[{owner}] has {int(counts.max())} aliases; "
                f"the limit is {MAX_ALIASES}"
            )


class ContextMatch:
    """One request's context, checked and read once, matched against its utterance's tokens
    (a stream's: again after each chunk, over every token so far)."""

    def __init__(self, ctx: HomeContext, prepared: PreparedContexts) -> None:
        self.ctx = ctx
        self.matcher = prepared.matcher
        self.tables = prepared.tables(ctx)
        self.matches: list[Match] = []
        self._spans: dict[tuple[int, int], Match] | None = None  # the matches by span

    def match(self, tokens: Sequence[str]) -> None:
        """Match the context against the token texts of the whole utterance so far."""
        self.matches = self.matcher.match_tables(self.tables, tokens)
        self._spans = None

    def features(self, offset: int, n: int) -> np.ndarray:
        """[1, n, C] context input of the tokens [offset, offset + n) of the matched text."""
        return features(self.matches, offset + n)[None, offset:]

    def entries(self, kind: str, start: int, end: int, near: Near = NOWHERE) -> list[EntryLike]:
        """Every entry a slot of `kind` over tokens [start, end) names, request order; of
        several of that name, those in the areas or on the floors of `near`
        (modelspec.context.choose)."""
        if kind not in CONTEXT_KINDS:
            return []
        if self._spans is None:  # matches never overlap: one lookup per slot (a stream's
            self._spans = {(m.start, m.end): m for m in self.matches}  # answers hold many)
        m = self._spans.get((start, end))
        if m is None or kind not in m.entries:
            return []
        entries, ks = self.ctx.of(kind), m.entries[kind]
        if len(ks) > 1:
            ks = choose(kind, entries, ks, near, self.ctx.areas)
        return [entries[k] for k in ks]

    def places(self, slots: Sequence[SlotOut]) -> Near:
        """The ids of the areas and of the floors that `slots` name (of areas that share a
        name, the one on a floor they name)."""
        floors = self._ids(slots, FLOOR, NOWHERE)
        return self._ids(slots, AREA, (set(), floors)), floors

    def _ids(self, slots: Sequence[SlotOut], kind: str, near: Near) -> set[str]:
        at = [self.entries(kind, s.token_start, s.token_end, near) for s in slots if s.name == kind]
        return {e.id for found in at for e in found if e.id}


def context_input(
    model: ServedModel, home: ContextMatch | None, tokens: Sequence[TokenOut], new: int
) -> np.ndarray | None:
    """Match the context against `tokens` (the utterance so far) and return the context input
    of its last `new` tokens, or None when there is no context or the model takes none."""
    if home is None:
        return None
    home.match([t.text for t in tokens])
    if not model.takes_context:
        return None
    return home.features(len(tokens) - new, new)
