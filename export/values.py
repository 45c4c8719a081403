"""The canonical-value tables a model carries (modelspec/values.py): spoken forms of the
package's text lists, which slots hold numbers, and the implied `domain` per intent and word.

The text tables come from home-assistant-intents' lists as the templates use them (each value
with the domain its template block requires); the implied tables count, over the training
sentences only, which `domain` a template block fixes against the words outside the slots.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from export.data import Example, bio_tags, load_templates, package_intents
from export.languages import DEFAULT_LANGUAGE, get_language
from modelspec.tokenizer import Tokenizer
from modelspec.values import DOMAIN, NONE, SlotValues, implied_words


def _list_refs(exp: Any, rules: dict[str, Any], out: list[Any], depth: int = 0) -> None:
    """Every list reference of a template expression (through its rules)."""
    from hassil.expression import Alternative, ListReference, Permutation, RuleReference, Sequence

    if depth > 30:
        return
    if isinstance(exp, ListReference):
        out.append(exp)
    elif isinstance(exp, (Sequence, Alternative, Permutation)):
        for it in exp.items:
            _list_refs(it, rules, out, depth + 1)
    elif isinstance(exp, RuleReference) and exp.rule_name in rules:
        _list_refs(rules[exp.rule_name].expression, rules, out, depth + 1)


def implied_of(template: str, language: str = DEFAULT_LANGUAGE) -> tuple[str, str]:
    """The slot and value a template's block fixes without a word saying it: mostly `domain`;
    (DOMAIN, NONE) for none, or for an extra template."""
    parts = template.split("/")
    if len(parts) != 3 or not parts[1].isdigit():
        return DOMAIN, NONE
    intent = package_intents(language).parsed.intents.get(parts[0])
    if intent is None or int(parts[1]) >= len(intent.data):
        return DOMAIN, NONE
    fixed = {
        k: v for k, v in (intent.data[int(parts[1])].slots or {}).items() if isinstance(v, str)
    }
    if DOMAIN in fixed:
        return DOMAIN, str(fixed[DOMAIN])
    if len(fixed) == 1:
        ((slot, value),) = fixed.items()
        return slot, str(value)
    return DOMAIN, NONE


def outside_words(ex: Example, tok: Tokenizer) -> list[str]:
    """The words of an example the implied tables read (modelspec.values.implied_words)."""
    return implied_words(*bio_tags(ex, tok))


def build_values(
    train: Sequence[Example], tok: Tokenizer, language: str = DEFAULT_LANGUAGE
) -> SlotValues:
    """The tables of a model trained on `train` with tokenizer `tok`."""
    from hassil.intents import RangeSlotList, TextSlotList
    from hassil.sample import sample_expression

    counts: dict[str, dict[str, Counter[tuple[str, str]]]] = defaultdict(
        lambda: defaultdict(Counter)
    )
    numbers: set[str] = set()
    types: dict[str, set[str]] = defaultdict(set)
    for t in load_templates(language):
        refs: list[Any] = []
        _list_refs(t.sentence.expression, t.rules, refs)
        domain = t.domains[0] if len(t.domains) == 1 else ""
        for ref in refs:
            slot_list = t.lists.get(ref.list_name)
            if isinstance(slot_list, RangeSlotList) or ref.is_inline_range:
                numbers.add(ref.slot_name)
                kind = getattr(getattr(slot_list, "type", None), "value", "number")
                types[ref.slot_name].add(str(kind))
            elif isinstance(slot_list, TextSlotList):
                for v in slot_list.values:
                    if v.value_out is None:
                        continue
                    for spoken in sample_expression(v.text_in, {}, t.rules):
                        key = " ".join(x.text for x in tok.tokenize(spoken))
                        if key:
                            counts[ref.slot_name][key][(domain, str(v.value_out))] += 1
    text = {
        slot: {
            key: [[d, v] for (d, v), _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
            for key, c in sorted(keys.items())
        }
        for slot, keys in sorted(counts.items())
    }
    implied: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    kept_examples = [ex for ex in train if ex.intent and not ex.template.startswith("extra:")]
    fixed = [implied_of(ex.template, language) for ex in kept_examples]
    fixes: dict[str, set[str]] = defaultdict(set)
    for ex, (slot, value) in zip(kept_examples, fixed):
        if value != NONE:
            fixes[ex.intent].add(slot)
    # One table per intent, so one slot it implies: `domain` where its templates fix one.
    implied_slot = {i: DOMAIN if DOMAIN in s else min(s) for i, s in fixes.items()}
    for ex, (slot, value) in zip(kept_examples, fixed):
        own = implied_slot.get(ex.intent, DOMAIN)
        if own != DOMAIN and any(sp.slot == own for sp in ex.slots):
            continue  # the value is said ("音量调高百分之十"): the server implies none then
        value = value if slot == own else NONE
        implied[ex.intent][""][value] += 1
        for w in set(outside_words(ex, tok)):
            implied[ex.intent][w][value] += 1
    # Intents that never imply a value keep no table; words that always agree with the prior
    # of an intent add nothing either.
    kept: dict[str, dict[str, dict[str, int]]] = {}
    for intent, words in sorted(implied.items()):
        if set(words[""]) == {NONE}:
            continue
        kept[intent] = {w: dict(c) for w, c in sorted(words.items())}
    intent_slots: dict[str, set[str]] = defaultdict(set)
    for ex in train:
        if ex.intent:
            intent_slots[ex.intent].update(sp.slot for sp in ex.slots)
    return SlotValues(
        text,
        tuple(sorted(numbers)),
        kept,
        get_language(language).number_words,
        {k: sorted(v) for k, v in sorted(intent_slots.items())},
        {k: "/".join(sorted(v)) for k, v in sorted(types.items())},
        {i: slot for i, slot in sorted(implied_slot.items()) if i in kept and slot != DOMAIN},
    )
