"""An answer's slot values: each slot's canonical value and the context entries it names, and
the values the utterance implies without a word (modelspec/values.py's tables)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from modelspec.context import CONTEXT_KINDS, NAME, entity_domain
from modelspec.values import DOMAIN, NONE, SlotValues, implied_words, with_slots
from server.context import NOWHERE, ContextMatch
from server.decoding import ParseResult, SlotOut, TokenOut


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
        entries = [] if home is None else home.entries(s.name, s.token_start, s.token_end, near)
        if entries:
            e, ids = entries[0], tuple(x.id for x in entries if x.id)
            slots.append(
                replace(s, canonical=e.name, entry_id=e.id, entry_name=e.name, entry_ids=ids)
            )
            if s.name == NAME and entity_domain(e):
                domain = entity_domain(e)
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
