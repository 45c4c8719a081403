"""Canonical slot values: what Home Assistant acts on, from what the utterance says.

A slot keeps its surface text and gains a canonical value: the list value of a spoken form
("windows" -> "window", "occupied" -> "on"), a number from digits or number words ("forty
five percent" -> "45"), and the values no word carries (`domain` of "turn off the kitchen
lights" -> "light"). The tables travel in the model's metadata as `values`
(ModelMetadata.values, built at export from home-assistant-intents' lists and the training
sentences), so the server needs no intents package. Pure Python; no torch, no grpc.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from modelspec.tags import decode_bio

# Closed-list slots looked up among the untagged words when the model tags none ("raise windows
# around the penthouse": device_class window; "is each and every fan on": state on; "the
# server room uplighter red": color red).
FALLBACK_SLOTS: Final = ("device_class", "state", "color")
# Closed-list slots whose spoken form, when it belongs to one domain of an intent only, decides
# the implied `domain` ("locked" is a lock's state, "shut" a cover's).
DECIDING_SLOTS: Final = ("state",)
VALUES_VERSION: Final = 1
DOMAIN: Final = "domain"
NONE: Final = ""  # "no implied value" in the implied tables

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "a": 1, "an": 1,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SKIP = {"and", "percent", "per", "cent", "%", "degrees", "degree", "°", "point"}
_HALF = {"half": 0.5, "quarter": 0.25}


# Slots whose words say nothing of the domain beyond their presence (open-ended values).
_OPEN = ("name", "area", "floor", "message", "search_query", "item", "conversation_command")


def implied_words(tokens: Sequence[str], tags: Sequence[str]) -> list[str]:
    """What the implied tables read of an utterance: its words outside the slots, one "{slot}"
    marker per slot it has, and "{slot=words}" for the slots of closed lists ("{state=locked}")."""
    words = [t for t, g in zip(tokens, tags) if g == "O"]
    marks = set()
    for e in decode_bio(tags):
        marks.add("{" + e.slot + "}")
        if e.slot not in _OPEN:
            marks.add("{" + e.slot + "=" + " ".join(tokens[e.start : e.end]) + "}")
    return words + sorted(marks)


def with_slots(tags: Sequence[str], found: Sequence[tuple[str, int, int, str]]) -> list[str]:
    """`tags` with the slots `SlotValues.untagged` found marked as if the model had tagged them
    (so that they count towards the implied values like any other slot)."""
    out = list(tags)
    for slot, start, end, _ in found:
        out[start:end] = [f"B-{slot}"] + [f"I-{slot}"] * (end - start - 1)
    return out


def english_number(words: Sequence[str]) -> float | None:
    """The number that English words (or digits) say: "forty five" -> 45, "one hundred and
    twenty" -> 120, "21.5" -> 21.5, "twenty-one" (tokens twenty, one) -> 21; None otherwise."""
    total, current, seen = 0.0, 0.0, False
    fraction: list[int] = []
    in_fraction = False
    low = [w.lower() for w in words]
    low = [
        w
        for i, w in enumerate(low)
        if not (w in ("a", "an") and low[i + 1 : i + 2] in (["half"], ["quarter"]))
    ]
    for w in low:
        if w in _SKIP:
            in_fraction = in_fraction or w == "point"
            continue
        num = _digits(w)
        if in_fraction and (w in _UNITS or num is not None):
            fraction.append(int(num) if num is not None else _UNITS[w])
            continue
        if num is not None:
            current += num
        elif w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = (current or 1) * 100
        elif w == "thousand":
            total, current = total + (current or 1) * 1000, 0.0
        elif w in _HALF and seen:
            current += _HALF[w]
        else:
            return None
        seen = True
    if not seen:
        return None
    value = total + current
    if fraction:
        value += float("0." + "".join(str(d) for d in fraction))
    return value


_ZH_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
    "八": 8, "九": 9,
}  # fmt: skip
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}
_ZH_PREFIX = "百分之"  # "百分之三十": thirty percent
_ZH_SUFFIXES = ("%", "度", "摄氏度", "k")  # "k": kelvin, lower-cased by the tokenizer


def chinese_number(tokens: Sequence[str]) -> float | None:
    """The number that Chinese numerals (or digits) say: "五十六" -> 56, "十六" -> 16, "一百零五"
    -> 105, "两万" -> 20000, "二十一点五" -> 21.5, "百分之三十" -> 30, "26" -> 26; None otherwise.
    The tokens are joined without spaces (one token per Han character, digit runs whole)."""
    s = "".join(tokens).strip()
    s = s.removeprefix(_ZH_PREFIX)
    for suffix in _ZH_SUFFIXES:
        s = s.removesuffix(suffix)
    if not s:
        return None
    num = _digits(s)
    if num is not None:
        return num
    whole, _, fraction = s.partition("点")
    value = _chinese_integer(whole)
    if value is None:
        return None
    if fraction:
        digits = [_ZH_DIGITS.get(ch, int(ch) if ch.isdigit() else -1) for ch in fraction]
        if any(d < 0 for d in digits):
            return None
        value += float("0." + "".join(str(d) for d in digits))
    return value


def _chinese_integer(s: str) -> float | None:
    """ "五十六" -> 56; digits may stand for the numerals ("3十" -> 30); None for other text."""
    if not s:
        return None
    total, section, number = 0, 0, 0
    for ch in s:
        if ch in _ZH_DIGITS or (ch.isdigit() and ch.isascii()):
            number = _ZH_DIGITS[ch] if ch in _ZH_DIGITS else int(ch)
        elif ch in _ZH_UNITS:
            section += (number or 1) * _ZH_UNITS[ch]
            number = 0
        elif ch == "万":
            total += ((section + number) or 1) * 10_000
            section = number = 0
        else:
            return None
    return float(total + section + number)


def _digits(w: str) -> float | None:
    try:
        return float(w.replace(",", "."))
    except ValueError:
        return None


def format_number(value: float) -> str:
    """40.0 -> "40", 21.5 -> "21.5"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class SlotValues:
    """The tables of one model (empty: no canonical values)."""

    # slot -> spoken key (tokens joined by spaces) -> [[domain or "", value], ...] most common
    # first; the domain is the one the template's block requires ("" for any)
    text: dict[str, dict[str, list[list[str]]]] = field(default_factory=dict)
    numbers: tuple[str, ...] = ()  # slots that hold numbers
    # intent -> word -> {implied value or NONE: count}; the word "" holds the intent's prior
    implied: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    number_words: str = ""  # "en": English number words are read; "zh": Chinese numerals
    intent_slots: dict[str, list[str]] = field(default_factory=dict)  # slots each intent has
    number_types: dict[str, str] = field(default_factory=dict)  # number slot -> percentage, ...
    # intent -> the slot its implied table predicts, where that is not `domain` (zh-CN's
    # HassSetVolumeRelative: "声音调大" implies volume_step "up")
    implied_slot: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the metadata's `values`)."""
        return {
            "version": VALUES_VERSION,
            "text": self.text,
            "numbers": list(self.numbers),
            "implied": self.implied,
            "number_words": self.number_words,
            "intent_slots": self.intent_slots,
            "number_types": self.number_types,
            "implied_slot": self.implied_slot,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SlotValues:
        """From the metadata (an absent or unknown version gives empty tables)."""
        if not d or d.get("version") != VALUES_VERSION:
            return cls()
        return cls(
            dict(d.get("text", {})),
            tuple(d.get("numbers", ())),
            dict(d.get("implied", {})),
            str(d.get("number_words", "")),
            dict(d.get("intent_slots", {})),
            dict(d.get("number_types", {})),
            dict(d.get("implied_slot", {})),
        )

    def untagged(
        self, intent: str, tokens: Sequence[str], tags: Sequence[str]
    ) -> list[tuple[str, int, int, str]]:
        """Slots of FALLBACK_SLOTS the intent has but the tags miss, found by their spoken forms
        among the words outside every slot (longest first): (slot, start, end, value)."""
        out: list[tuple[str, int, int, str]] = []
        have = {g[2:] for g in tags if g.startswith("B-")}
        for slot in FALLBACK_SLOTS:
            table = self.text.get(slot)
            if slot in have or not table or slot not in self.intent_slots.get(intent, ()):
                continue
            free = [g == "O" for g in tags]
            for n in (3, 2, 1):
                for i in range(len(tokens) - n + 1):
                    options = table.get(" ".join(tokens[i : i + n]))
                    if options and all(free[i : i + n]):
                        out.append((slot, i, i + n, options[0][1]))
                        break
                else:
                    continue
                break
        return out

    def slot_for(self, intent: str, slot: str, tokens: Sequence[str]) -> str:
        """The slot name to answer with: a slot the intent never has ("set the lamp to 40
        percent" tagged `position` under HassLightSet) becomes the one slot of that intent
        that takes the same kind of value (a number of the same range type, or this spoken
        form), when there is exactly one."""
        allowed = self.intent_slots.get(intent)
        if not allowed or slot in allowed:
            return slot
        key = " ".join(tokens)
        if slot in self.numbers:
            kind = self.number_types.get(slot, "")
            fits = [
                a for a in allowed if a in self.numbers and self.number_types.get(a, "") == kind
            ]
        else:
            fits = [a for a in allowed if key in self.text.get(a, {})]
        return fits[0] if len(fits) == 1 else slot

    def canonical(self, slot: str, tokens: Sequence[str], domain: str = "") -> str:
        """The canonical value of a slot spoken as `tokens` ("" when none is known); `domain`
        (an entity's or the implied one) picks between lists that disagree."""
        options = self.text.get(slot, {}).get(" ".join(tokens))
        if options:
            for d, value in options:
                if domain and d == domain:
                    return value
            return options[0][1]
        if slot in self.numbers:
            if self.number_words == "en":
                n = english_number(tokens)
            elif self.number_words == "zh":
                n = chinese_number(tokens)
            else:
                n = _digits(tokens[0]) if len(tokens) == 1 else None
            return "" if n is None else format_number(n)
        return ""

    def implied_name(self, intent: str) -> str:
        """The slot whose value an utterance of `intent` implies (`domain` unless the tables
        say otherwise)."""
        return self.implied_slot.get(intent, DOMAIN)

    def implied_value(self, intent: str, words: Sequence[str]) -> str:
        """The implied value (of `implied_name(intent)`, mostly `domain`) of an utterance of
        `intent` whose words outside its slots are `words` (NONE when it implies none). A state
        whose spoken form belongs to one of the intent's domains only decides ("is the window
        locked": lock, "are the doors shut": cover); else naive Bayes over the words seen in
        training with each value, the intent's sentences counted as the prior."""
        table = self.implied.get(intent)
        if not table:
            return NONE
        prior = table.get("", {})
        deciding = DECIDING_SLOTS if self.implied_name(intent) == DOMAIN else ()
        for w in words:
            for slot in deciding:
                if w.startswith("{" + slot + "=") and w.endswith("}"):
                    spoken = w[len(slot) + 2 : -1]
                    options = self.text.get(slot, {}).get(spoken, ())
                    domains = {d for d, _ in options if d and d in prior}
                    if len(domains) == 1:
                        (only,) = domains
                        means = {v for d, v in options if d == only}
                        # a form any domain also says with another meaning does not decide
                        # ("开了": a cover's open, anything else's on)
                        if all(v in means for d, v in options if not d):
                            return only
        seen = [table[w] for w in dict.fromkeys(words) if w and w in table]
        best, best_score = NONE, -math.inf
        for value, n in sorted(prior.items()):
            score = math.log(n)
            for counts in seen:
                score += math.log((counts.get(value, 0) + 1) / (n + 2))
            if score > best_score:
                best, best_score = value, score
        return best
