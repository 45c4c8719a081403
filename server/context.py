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
from dataclasses import dataclass, replace
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
    entity_domain,
    features,
)
from modelspec.values import DOMAIN, NONE, SlotValues, implied_words, with_slots
from server.decoding import ParseResult, SlotOut, TokenOut
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

    def entry(self, kind: str, start: int, end: int, near: Near = NOWHERE) -> EntryLike | None:
        """The entry a slot of `kind` over tokens [start, end) names, if any; of several of
        that name, the one in the areas or on the floors of `near` (modelspec.context.choose)."""
        if kind not in CONTEXT_KINDS:
            return None
        if self._spans is None:  # matches never overlap: one lookup per slot (a stream's
            self._spans = {(m.start, m.end): m for m in self.matches}  # answers hold many)
        m = self._spans.get((start, end))
        if m is None or kind not in m.entries:
            return None
        entries, ks = self.ctx.of(kind), m.entries[kind]
        return entries[choose(kind, entries, ks, near, self.ctx.areas) if len(ks) > 1 else ks[0]]

    def places(self, slots: Sequence[SlotOut]) -> Near:
        """The ids of the areas and of the floors that `slots` name (of areas that share a
        name, the one on a floor they name)."""
        floors = self._ids(slots, FLOOR, NOWHERE)
        return self._ids(slots, AREA, (set(), floors)), floors

    def _ids(self, slots: Sequence[SlotOut], kind: str, near: Near) -> set[str]:
        at = [self.entry(kind, s.token_start, s.token_end, near) for s in slots if s.name == kind]
        return {e.id for e in at if e is not None and e.id}


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


def _canonical(values: SlotValues, s: SlotOut, texts: Sequence[str], domain: str) -> str:
    """A list value or a number; else the text itself, except for names, areas and floors
    (their canonical value is a context entry's name)."""
    found = values.canonical(s.name, texts[s.token_start : s.token_end], domain)
    return found or ("" if s.name in CONTEXT_KINDS else s.value)


def finish(
    result: ParseResult,
    values: SlotValues,
    home: ContextMatch | None,
    tokens: Sequence[TokenOut],
    intent: str,
    tags: Sequence[str],
    text: str = "",
) -> None:
    """Give each slot its canonical value (and the context entry it names) and list the values
    the utterance implies; `tokens`, `tags` and `text` cover the whole utterance so far (a slot
    found by its spoken form keeps the words as said: "开了", not "开 了")."""
    texts = [t.text for t in tokens]
    found = values.untagged(intent, texts, tags)
    marked = with_slots(tags, found)
    implied = values.implied_value(intent, implied_words(texts, marked)) if intent else NONE
    implied_name = values.implied_name(intent)
    domain = implied if implied_name == DOMAIN else NONE
    slots: list[SlotOut] = []
    kinds: set[str] = set()  # the domains of the entities named
    for s in result.slots:
        name = values.slot_for(intent, s.name, texts[s.token_start : s.token_end])
        slots.append(s if name == s.name else replace(s, name=name))
    near = home.places(slots) if home is not None else NOWHERE
    named, slots = slots, []
    for s in named:
        entry = home.entry(s.name, s.token_start, s.token_end, near) if home is not None else None
        if entry is not None:
            slots.append(replace(s, canonical=entry.name, entry_id=entry.id, entry_name=entry.name))
            if s.name == NAME and entity_domain(entry):
                domain = entity_domain(entry)
                kinds.add(domain)
        else:
            slots.append(s)
    result.slots = [  # a resolved slot keeps its entry's name (an entry's id is optional)
        s if s.entry_name else replace(s, canonical=_canonical(values, s, texts, domain))
        for s in slots
    ]
    for slot, start, end, value in found:
        first, last = tokens[start], tokens[end - 1]
        chars = (first.char_start, last.char_end) if first.char_start >= 0 else (-1, -1)
        said = text[chars[0] : chars[1]] if chars[0] >= 0 and text else " ".join(texts[start:end])
        value = values.canonical(slot, texts[start:end], domain) or value
        result.slots.append(SlotOut(slot, said, start, end, *chars, 0.0, canonical=value))
        result.slots.sort(key=lambda s: s.token_start)
    told = {s.name for s in result.slots}  # a slot the utterance says is not also implied
    if implied_name == DOMAIN and implied != NONE and kinds and implied not in kinds:
        implied = min(kinds) if len(kinds) == 1 else NONE  # the named entity's domain decides
    if implied != NONE and implied_name not in told:
        result.implied = [(implied_name, implied)]
    else:
        result.implied = []
