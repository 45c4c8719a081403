"""The caller's home as context: its floors, areas and entities, matched against an utterance.

Declared once here and used by training (simulated homes), export (the optional graph input)
and the server (a request's `context`): the tensor's name and feature layout, the metadata key,
the limits, and the matcher. numpy only; no torch, no grpc.

Matching: every name and alias is tokenized with the model's tokenizer, and a name matches
where its tokens equal a run of the utterance's tokens (so case, Unicode form and punctuation
are normalised exactly as the model sees them). The longest match wins; among matches of equal
length the earlier one wins; a span matched by several kinds (an area and an entity both named
"office") marks every kind that matched it. The features are per token, in BIO form per kind.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Final, Protocol

import numpy as np

from modelspec.names import CONTEXT, OUTSIDE_TAG
from modelspec.tags import Entity, decode_bio
from modelspec.tokenizer import DEFAULT_PATTERN, Tokenizer

# The optional graph input CONTEXT: [batch, time, CONTEXT_DIM] float32, zeros when absent.
NAME: Final = "name"
AREA: Final = "area"
FLOOR: Final = "floor"
CONTEXT_KINDS: Final = (NAME, AREA, FLOOR)
CONTEXT_FEATURES: Final = tuple(f"{p}-{k}" for k in CONTEXT_KINDS for p in ("B", "I"))
CONTEXT_DIM: Final = len(CONTEXT_FEATURES)
# The model config key that says whether (and how wide) a model takes the context input.
CONFIG_CONTEXT_DIM: Final = "context_dim"
MATCHER_VERSION: Final = 1


def context_metadata() -> dict[str, object]:
    """The metadata's `context` (ModelMetadata.context) of a model that takes the input."""
    return {"input": CONTEXT, "features": list(CONTEXT_FEATURES), "matcher": MATCHER_VERSION}


# Limits on one request's context (INVALID_ARGUMENT beyond them).
MAX_FLOORS: Final = 100
MAX_AREAS: Final = 500
MAX_ENTITIES: Final = 5000
MAX_ALIASES: Final = 20  # per entry
MAX_NAME_CHARS: Final = 100  # a name or alias
MAX_ID_CHARS: Final = 255  # an id (Home Assistant's entity ids are at most 255 characters)

_KIND_ORDER = {k: i for i, k in enumerate(CONTEXT_KINDS)}


class EntryLike(Protocol):
    """What the matcher reads of an entry: an Entry, or the typed API's ContextEntry message
    (read in place: a large context is never copied)."""

    @property
    def name(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def area(self) -> str: ...
    @property
    def floor(self) -> str: ...
    @property
    def domain(self) -> str: ...


def entity_domain(entry: EntryLike) -> str:
    """An entity's domain: the one given, else the prefix of its id ("light.kitchen" -> light)."""
    if entry.domain:
        return entry.domain
    head, dot, _ = entry.id.partition(".")
    return head if dot else ""


@dataclass(frozen=True, slots=True)
class Entry:
    """A floor, area or entity of the home (Home Assistant's shape). `area` is an entity's or
    `floor` an area's parent id; `domain` an entity's (else its id's prefix: light.x -> light)."""

    name: str
    id: str = ""
    aliases: tuple[str, ...] = ()
    area: str = ""
    floor: str = ""
    domain: str = ""


@dataclass(frozen=True)
class HomeContext:
    """One request's context: entries by kind (entities fill `name` slots)."""

    floors: Sequence[EntryLike] = ()
    areas: Sequence[EntryLike] = ()
    entities: Sequence[EntryLike] = ()

    def of(self, kind: str) -> Sequence[EntryLike]:
        """The entries whose names fill slots of `kind` (name, area or floor)."""
        return {NAME: self.entities, AREA: self.areas, FLOOR: self.floors}[kind]

    def __bool__(self) -> bool:
        return bool(len(self.floors) or len(self.areas) or len(self.entities))


@dataclass
class Match:
    """A run of tokens [start, end) matched by names of one or more kinds: the entries (indices
    into that kind's entries, request order) per kind."""

    start: int
    end: int
    entries: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class NameTable:
    """Every name and alias of one kind's entries, read once per request: `texts[k]` belongs to
    entry `owners[k]` (names first, in entry order, then aliases). `lows` are the texts
    lower-cased, which is their matching key except for the `odd` ones (tokenized when they
    could match). A text holding a line break (a newline or a carriage return) splits in
    two: `lows` is then longer than `texts` (callers refuse such names)."""

    kind: str
    texts: list[str]
    owners: list[int]
    lows: list[str]
    odd: list[int]
    entries: int  # how many entries (texts past this index are aliases)
    longest_id: tuple[int, int] = (0, -1)  # (characters, entry) of the entries' longest id
    index: dict[str, list[int]] = field(default_factory=dict)  # lows[k] -> every such k
    odd_keys: list[str] = field(default_factory=list)  # the matching key of each odd text
    firsts: set[str] = field(default_factory=set)  # the first token of every matching key
    longest: int = 0  # tokens of the longest matching key (at least)

    def __post_init__(self) -> None:
        if not self.index:
            for k, low in enumerate(self.lows):
                self.index.setdefault(low, []).append(k)
        if not self.firsts:
            self.firsts = {key.split(" ", 1)[0] for key in (*self.index, *self.odd_keys)}
        if not self.longest:  # a plain text's key is itself; an odd one's is in odd_keys
            keys = (*self.index, *self.odd_keys)
            self.longest = max(map(str.count, keys, repeat(" ")), default=-1) + 1

    def where(self, k: int, entries: Sequence[EntryLike]) -> str:
        """Where text k sits in a request: "entities[3].name" or "areas[0].aliases[1]"."""
        group = {NAME: "entities", AREA: "areas", FLOOR: "floors"}[self.kind]
        if k < self.entries:
            return f"{group}[{k}].name"
        owner = self.owners[k]
        first = next(i for i in range(self.entries, len(self.texts)) if self.owners[i] == owner)
        return f"{group}[{owner}].aliases[{k - first}]"


class ContextMatcher:
    """Matches a context's names and aliases against utterances tokenized by `tokenizer`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        rules = tokenizer.rules
        # Lower-cased ASCII names are their own keys under the default rules (see _odd_lines).
        self._plain_ok = rules.pattern == DEFAULT_PATTERN and rules.lowercase

    def key(self, text: str) -> str:
        """The matching key of a name: its tokens joined by single spaces."""
        return " ".join(t.text for t in self.tokenizer.tokenize(text))

    def table(self, kind: str, entries: Sequence[EntryLike]) -> NameTable:
        """The names and aliases of one kind's entries (a name holding a line break is split
        in two: callers reject those, see NameTable.lows)."""
        triples = [(e.name, e.aliases, e.id) for e in entries]  # each entry read once
        texts = [p[0] for p in triples]
        id_chars = [len(p[2]) for p in triples]
        most = max(id_chars, default=0)
        longest_id = (most, id_chars.index(most) if most else -1)
        owners = list(range(len(texts)))
        for k in [k for k, p in enumerate(triples) if p[1]]:
            aliases = triples[k][1]
            texts += aliases
            owners += [k] * len(aliases)
        joined = "\n".join(texts).lower()
        if "\r" in joined:  # a line break too, refused as a newline is
            joined = joined.replace("\r", "\n")
        lows = joined.split("\n")
        odd = _odd_lines(joined, len(lows)) if self._plain_ok else list(range(len(lows)))
        keys = [self.key(texts[k]) for k in odd] if len(lows) == len(texts) else []
        n = len(entries)
        return NameTable(kind, texts, owners, lows, odd, n, longest_id, odd_keys=keys)

    def tables(self, context: HomeContext) -> list[NameTable]:
        """The name tables of every kind the context has entries of."""
        return [self.table(k, context.of(k)) for k in CONTEXT_KINDS if len(context.of(k))]

    def match(self, context: HomeContext, tokens: Sequence[str]) -> list[Match]:
        """The non-overlapping matches of the context's names in the token texts `tokens`."""
        return self.match_tables(self.tables(context), tokens)

    def match_tables(self, tables: Sequence[NameTable], tokens: Sequence[str]) -> list[Match]:
        """As `match`, from name tables built once."""
        spans: dict[str, list[tuple[int, int]]] = {}
        n = len(tokens)
        firsts = set().union(*(t.firsts for t in tables))
        longest = max((t.longest for t in tables), default=0)
        for i in range(n):
            if tokens[i] not in firsts:  # no name starts with this token
                continue
            key = ""
            for j in range(i, min(n, i + longest)):
                key = tokens[j] if j == i else f"{key} {tokens[j]}"
                spans.setdefault(key, []).append((i, j + 1))
        found: list[tuple[int, int, str, int]] = []
        for t in tables:
            if len(t.lows) != len(t.texts):
                raise ValueError("a name holds a line break")
            same = spans.keys() & t.index.keys()  # texts that match as they are
            for low in same:
                for k in t.index[low]:
                    found += [(s, e, t.kind, t.owners[k]) for s, e in spans[low]]
            for k, odd_key in zip(t.odd, t.odd_keys):
                hit = spans.get(odd_key)
                if hit and t.lows[k] not in same:
                    found += [(s, e, t.kind, t.owners[k]) for s, e in hit]
        return _resolve(found)


# Lower-cased, a name of ASCII letters and digits, single inner spaces and apostrophes between
# letters is its own key under the default tokenizer. The others are found for all names at once:
# the bytes a name keeps after deleting these characters; then two byte "shapes" of all names,
# where a name's odd spaces and stray apostrophes show as a double space (apostrophes and line
# breaks read as spaces) and a letter or apostrophe touching a digit as "a0" or "0a".
_PLAIN_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789' "
_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SPACES = bytes.maketrans(_LETTERS + b"0123456789'\n", b"a" * 52 + b"0" * 10 + b"  ")
_DIGITS = bytes.maketrans(_LETTERS + b"'0123456789", b"a" * 53 + b"0" * 10)


def _odd_lines(joined: str, n: int) -> list[int]:
    """The lines of the lower-cased `joined` that are not their own matching key."""
    raw = joined.encode("utf-8", "surrogatepass")
    odd = {k for k, r in enumerate(raw.translate(None, _PLAIN_BYTES).split(b"\n")) if r}
    hits = _hits(b" " + raw.translate(_SPACES) + b" ", b"  ", 1)
    if raw.translate(None, _LETTERS + b"' \n"):  # some digit (or an odd byte found above)
        shape = raw.translate(_DIGITS)
        hits += _hits(shape, b"a0", 0)
        # "0a" searched as "a0" in the reversed shape: a rare last byte makes the scan fast.
        hits += [len(raw) - 1 - at for at in _hits(shape[::-1], b"a0", 0)]
    odd.update(min(n - 1, raw.count(b"\n", 0, max(0, at + 1))) for at in hits)
    return sorted(odd)


def _hits(shape: bytes, pair: bytes, shift: int) -> list[int]:
    """Positions in the raw bytes (shape index minus `shift`) where `pair` starts."""
    out = []
    at = shape.find(pair)
    while at >= 0:
        out.append(at - shift)
        at = shape.find(pair, at + 1)
    return out


def _resolve(found: list[tuple[int, int, str, int]]) -> list[Match]:
    """Longest first, then earliest, then kind order (name, area, floor), then request order;
    a match overlapping a chosen one is dropped unless it covers exactly the same tokens."""
    found.sort(key=lambda f: (f[0] - f[1], f[0], _KIND_ORDER[f[2]], f[3]))
    chosen: dict[tuple[int, int], Match] = {}
    taken: set[int] = set()
    for s, e, kind, owner in found:
        m = chosen.get((s, e))
        if m is None:
            if any(t in taken for t in range(s, e)):
                continue
            m = chosen[(s, e)] = Match(s, e)
            taken.update(range(s, e))
        ids = m.entries.setdefault(kind, [])
        if owner not in ids:
            ids.append(owner)
    return sorted(chosen.values(), key=lambda m: m.start)


def features(matches: Sequence[Match], n_tokens: int) -> np.ndarray:
    """The context input of one utterance: [n_tokens, CONTEXT_DIM] float32 of 0/1, B and I of
    each kind that matched each token."""
    out = np.zeros((n_tokens, CONTEXT_DIM), dtype=np.float32)
    for m in matches:
        for kind in m.entries:
            b = 2 * _KIND_ORDER[kind]
            out[m.start, b] = 1.0
            out[m.start + 1 : m.end, b + 1] = 1.0
    return out


def choose(
    kind: str,
    entries: Sequence[EntryLike],
    ks: Sequence[int],
    near: tuple[Collection[str], Collection[str]],
    home_areas: Sequence[EntryLike],
) -> list[int]:
    """Of the entries `ks` (indices into `entries`, request order) that one name names, those
    the utterance places, `near` being the ids of the areas and of the floors it names: the
    areas on such a floor; the entities in such an area, else in an area on such a floor; else
    all of them (request order kept)."""
    areas, floors = near
    if kind == AREA and floors:
        ks = [k for k in ks if entries[k].floor in floors] or ks
    elif kind == NAME and (areas or floors):
        inside = [k for k in ks if entries[k].area in areas]
        if not inside and floors:
            on = {a.id: a.floor for a in home_areas}
            inside = [k for k in ks if on.get(entries[k].area) in floors]
        ks = inside or ks
    return list(ks)


def snap_tags(tags: Sequence[str], matches: Sequence[Match]) -> list[str]:
    """BIO tags made to agree with the context's matches: where the tagger marked names, areas
    or floors over part of a match (or a run covering it, or a different kind of these), the
    match's span becomes one slot of the tagged kind when the match has that kind, else of its
    first kind; a match whose tokens are all untagged becomes a slot of its first kind. A match
    touching any other slot is left as tagged."""
    out = list(tags)
    slots = decode_bio(out)  # kept equal to decode_bio(out) from slot p on (matches are sorted)
    p = 0
    for m in matches:
        while p < len(slots) and slots[p].end <= m.start:
            p += 1
        q = p
        while q < len(slots) and slots[q].start < m.end:
            q += 1
        over = slots[p:q]
        if any(e.slot not in _KIND_ORDER for e in over):
            continue
        first = min(m.entries, key=_KIND_ORDER.__getitem__)
        kind = next((e.slot for e in over if e.slot in m.entries), first)
        for e in over:
            out[e.start : e.end] = [OUTSIDE_TAG] * (e.end - e.start)
        out[m.start : m.end] = [f"B-{kind}"] + [f"I-{kind}"] * (m.end - m.start - 1)
        slots[p:q] = [Entity(kind, m.start, m.end)]
    for t in range(1, len(out)):  # a slot cut short by a match starts again (the first tag
        tag = out[t]  # may continue a slot of an earlier stream chunk)
        if tag.startswith("I-") and out[t - 1][2:] != tag[2:]:
            out[t] = "B-" + tag[2:]
    return out
