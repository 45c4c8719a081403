"""Utterances with intents and slot spans: sampled from home-assistant-intents, or read from JSONL.

JSONL format (one object per line):
    {"text": "turn on the kitchen lights", "intent": "HassTurnOn",
     "slots": [{"slot": "area", "start": 12, "end": 19}]}
`start`/`end` are character offsets into `text` (end exclusive) and must fall on token
boundaries. Optional keys: `template` (a template id), `kind` (an evaluation group).
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from export.languages import DEFAULT_LANGUAGE, Language, get_language
from export.pools import Pools
from modelspec.names import OUTSIDE_TAG, SPECIAL_TOKENS
from modelspec.tokenizer import Tokenizer


class DataError(ValueError):
    """Bad training data; the message names the source and the problem."""


@dataclass(frozen=True)
class Span:
    """A slot value: slot name and character span [start, end) in the text."""

    slot: str
    start: int
    end: int


@dataclass(frozen=True)
class Example:
    """One utterance with its intent and slot spans."""

    text: str
    intent: str
    slots: tuple[Span, ...] = ()
    template: str = ""
    kind: str = ""

    def to_json(self) -> dict[str, Any]:
        """The JSONL form of this example."""
        d: dict[str, Any] = {
            "text": self.text,
            "intent": self.intent,
            "slots": [asdict(s) for s in self.slots],
        }
        if self.template:
            d["template"] = self.template
        if self.kind:
            d["kind"] = self.kind
        return d


# ---------------------------------------------------------------- JSONL


def parse_example(obj: Any, where: str) -> Example:
    """Validate one JSONL object; `where` names it in error messages."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object")
    text = obj.get("text")
    intent = obj.get("intent")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: empty text")
    if not isinstance(intent, str) or not intent:
        raise DataError(f"{where}: missing intent label")
    spans = []
    for s in obj.get("slots", []) or []:
        if not isinstance(s, dict) or not isinstance(s.get("slot"), str):
            raise DataError(f"{where}: each slot needs 'slot', 'start', 'end'")
        start, end = s.get("start"), s.get("end")
        if (
            not isinstance(start, int)
            or not isinstance(end, int)
            or not 0 <= start < end <= len(text)
        ):
            raise DataError(
                f"{where}: slot {s.get('slot')!r} span {start}..{end} is outside the text"
            )
        spans.append(Span(s["slot"], start, end))
    spans.sort(key=lambda sp: sp.start)
    for a, b in itertools.pairwise(spans):
        if b.start < a.end:
            raise DataError(f"{where}: slots {a.slot!r} and {b.slot!r} overlap")
    return Example(
        text, intent, tuple(spans), str(obj.get("template", "")), str(obj.get("kind", ""))
    )


def read_jsonl(path: str | Path) -> list[Example]:
    """Read examples from a JSONL file; raise DataError naming file and line on bad data."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
            out.append(parse_example(obj, f"{path}:{n}"))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> None:
    """Write examples as JSONL."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")


def check_labels(
    examples: Sequence[Example], intents: Sequence[str], slots: Sequence[str], source: str
) -> None:
    """Reject examples whose intent or slot label the model was not trained on."""
    known_i, known_s = set(intents), set(slots)
    for n, ex in enumerate(examples, 1):
        if ex.intent not in known_i:
            raise DataError(f"{source}: example {n}: unknown intent label {ex.intent!r}")
        for sp in ex.slots:
            if sp.slot not in known_s:
                raise DataError(f"{source}: example {n}: unknown slot label {sp.slot!r}")


def bio_tags(ex: Example, tokenizer: Tokenizer) -> tuple[list[str], list[str]]:
    """Tokens and BIO tags of an example; spans must start and end on token boundaries."""
    toks = tokenizer.tokenize(ex.text)
    if not toks:
        raise DataError(f"no tokens in {ex.text!r}")
    tags = [OUTSIDE_TAG] * len(toks)
    for sp in ex.slots:
        idx = [i for i, t in enumerate(toks) if t.start < sp.end and t.end > sp.start]
        if not idx:
            continue  # span of punctuation only: nothing to tag
        first, last = toks[idx[0]], toks[idx[-1]]
        if first.start < sp.start or last.end > sp.end:
            raise DataError(
                f"slot {sp.slot!r} span {sp.start}..{sp.end} cuts a token in {ex.text!r}"
            )
        for k, i in enumerate(idx):
            tags[i] = ("B-" if k == 0 else "I-") + sp.slot
    return [t.text for t in toks], tags


# ---------------------------------------------------------------- sampling from hassil


# The characters between which hassil drops whitespace (hassil.util.CJK): Han, kana, hangul.
_CJK_CHAR = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\u3040-\u30ff\uac00-\ud7af]")


@dataclass
class _Builder:
    """Builds a sentence piece by piece, collapsing whitespace and recording slot spans.

    With `cjk`, whitespace next to a CJK character is dropped, as hassil drops it when a
    language ignores whitespace ("打开 客厅 的灯" matches as "打开客厅的灯"); between other
    characters ("Apple TV") it stays one space.
    """

    chars: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    cjk: bool = False
    _space: bool = False  # cjk: whitespace seen, not yet written

    def add(self, text: str) -> None:
        for ch in text:
            if ch.isspace():
                if self.cjk:
                    self._space = bool(self.chars)
                elif self.chars and self.chars[-1] != " ":
                    self.chars.append(" ")
            else:
                if self.cjk:
                    self._flush(ch)
                self.chars.append(ch)

    def _flush(self, nxt: str) -> None:
        if self._space and not (_CJK_CHAR.match(self.chars[-1]) or _CJK_CHAR.match(nxt)):
            self.chars.append(" ")
        self._space = False

    def slot(self, name: str, value: str) -> None:
        value = value.strip()
        if self.cjk and value:
            self._flush(value[0])
        start = len(self.chars)
        self.add(value)
        self.spans.append(Span(name, start, len(self.chars)))

    def text(self) -> tuple[str, tuple[Span, ...]]:
        s = "".join(self.chars)
        lead = len(s) - len(s.lstrip())
        s = s.strip()
        spans = tuple(
            Span(sp.slot, sp.start - lead, sp.end - lead) for sp in self.spans if sp.end > sp.start
        )
        return s, spans


class TemplateSampler:
    """Samples one sentence from a hassil template by a random walk, recording slot spans.

    The walk is balanced: at each alternative (and each listed value) it takes a branch used
    least often so far by this sampler, ties broken at random, so n samples of a template
    reach every alternative and optional part that fits in n.
    """

    def __init__(self, pools: Pools, rng: random.Random, language: str = DEFAULT_LANGUAGE) -> None:
        from hassil.sample import get_rbnf_engine

        self.pools = pools
        self.rng = rng
        self.language: Language = get_language(language)
        self.rbnf = get_rbnf_engine(self.language.code)
        self.used: dict[int, Counter[int]] = defaultdict(Counter)
        self._domains: Sequence[str] = ()

    def _pick(self, key: Any, items: Sequence[Any]) -> Any:
        """The least-used item of `items` at this point of the template (random among ties)."""
        used = self.used[id(key)]
        low = min(used[i] for i in range(len(items)))
        i = self.rng.choice([i for i in range(len(items)) if used[i] == low])
        used[i] += 1
        return items[i]

    def sample(
        self,
        sentence: Any,
        rules: dict[str, Any],
        slot_lists: dict[str, Any],
        intent: str,
        domains: Sequence[str] = (),
    ) -> tuple[str, tuple[Span, ...]]:
        """One sentence of the template and its slot spans; `domains` are those the
        template's block requires (they choose the name pool where the language uses them)."""
        self._domains = domains
        b = _Builder(cjk=self.language.cjk)
        self._walk(sentence.expression, b, rules, slot_lists, intent, in_slot=False)
        text, spans = b.text()
        if self.language.trailing_particles:
            spans = tuple(_trim(text, sp, self.language.trailing_particles) for sp in spans)
        return text, spans

    def _walk(
        self,
        exp: Any,
        b: _Builder,
        rules: dict[str, Any],
        lists: dict[str, Any],
        intent: str,
        in_slot: bool,
    ) -> None:
        from hassil.expression import (
            Alternative,
            ListReference,
            Permutation,
            RuleReference,
            Sequence,
            TextChunk,
        )

        if isinstance(exp, TextChunk):
            b.add(exp.original_text)
        elif isinstance(exp, Alternative):
            if exp.items:
                self._walk(self._pick(exp, exp.items), b, rules, lists, intent, in_slot)
        elif isinstance(exp, Permutation):
            items = list(exp.items)
            self.rng.shuffle(items)
            for it in items:
                b.add(" ")
                self._walk(it, b, rules, lists, intent, in_slot)
                b.add(" ")
        elif isinstance(exp, Sequence):
            for it in exp.items:
                self._walk(it, b, rules, lists, intent, in_slot)
        elif isinstance(exp, RuleReference):
            self._walk(rules[exp.rule_name].expression, b, rules, lists, intent, in_slot)
        elif isinstance(exp, ListReference):
            value = self._list_value(exp, rules, lists, intent)
            if in_slot:
                b.add(value)
            else:
                if exp.prefix:
                    b.add(exp.prefix)
                b.slot(exp.slot_name, value)
                if exp.suffix:
                    b.add(exp.suffix)
        else:
            raise DataError(f"unexpected template expression {type(exp).__name__}")

    def _number(self, n: float) -> str:
        if self.rng.random() < self.language.number_as_digits:
            return str(int(n)) if float(n).is_integer() else str(n)
        words = self.rbnf.format_number(n).text_by_ruleset
        keep = self.language.number_rulesets
        return self.rng.choice(sorted({w for r, w in words.items() if not keep or r in keep}))

    def _list_value(
        self, ref: Any, rules: dict[str, Any], lists: dict[str, Any], intent: str
    ) -> str:
        from hassil.intents import RangeSlotList, TextSlotList, WildcardSlotList

        name = ref.list_name
        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            return self._number(self.rng.randrange(start, stop + 1, step))
        p = self.pools
        if name == "area":
            return self.rng.choice(p.areas)
        if name == "floor":
            return self.rng.choice(p.floors)
        if name == "name":
            domains = self.language.name_domains(intent, self._domains)
            return self.rng.choice(p.names[self.rng.choice(domains)])
        if name in p.wildcards:
            return self.rng.choice(p.wildcards[name])
        slot_list = lists.get(name)
        if isinstance(slot_list, TextSlotList):
            value = self._pick(slot_list, slot_list.values)
            sub = _Builder(cjk=self.language.cjk)
            self._walk(value.text_in, sub, rules, lists, intent, in_slot=True)
            return sub.text()[0]
        if isinstance(slot_list, RangeSlotList):
            nums = list(slot_list.get_numbers())
            return self._number(self.rng.choice(nums))
        if isinstance(slot_list, WildcardSlotList):
            raise DataError(f"no value pool for wildcard list {{{name}}}")
        raise DataError(f"unknown slot list {{{name}}}")


def _trim(text: str, span: Span, particles: Sequence[str]) -> Span:
    """The span without the particles it ends with ("开着的" -> "开着"), never empty."""
    end = span.end
    while (p := next((p for p in particles if text.endswith(p, span.start, end)), None)) and (
        end - len(p) > span.start
    ):
        end -= len(p)
    return Span(span.slot, span.start, end)


def _decorate(
    text: str, spans: tuple[Span, ...], rng: random.Random, lang: Language
) -> tuple[str, tuple[Span, ...]]:
    """Sometimes add the politeness words the grammar skips ("please", "can you", "麻烦你")."""
    r = rng.random()
    if r < 0.08:
        pre = rng.choice(lang.skip_prefixes) + lang.joiner
        return pre + text, tuple(Span(s.slot, s.start + len(pre), s.end + len(pre)) for s in spans)
    if r < 0.12:
        return text + lang.joiner + rng.choice(lang.skip_suffixes), spans
    return text, spans


@dataclass(frozen=True)
class Template:
    """One sentence template of an intent."""

    id: str
    intent: str
    sentence: Any
    rules: dict[str, Any]
    lists: dict[str, Any]
    domains: tuple[str, ...] = ()  # the domains the template's block requires


@dataclass(frozen=True)
class PackageIntents:
    """home-assistant-intents' intents of one language: the package's JSON form and hassil's
    parse of it (with the language's settings, such as ignoring whitespace). Shared by every
    caller of `package_intents`, so neither is modified."""

    raw: dict[str, Any]
    parsed: Any  # hassil.Intents


@functools.cache
def package_intents(language: str = DEFAULT_LANGUAGE) -> PackageIntents:
    """The package's intents of a language, loaded and parsed once per process."""
    import home_assistant_intents
    from hassil import Intents

    raw = home_assistant_intents.get_intents(language)
    if raw is None:
        raise DataError(f"home-assistant-intents has no language {language!r}")
    return PackageIntents(raw, Intents.from_dict(raw))


def without_context(raw: dict[str, Any]) -> dict[str, Any]:
    """The package's JSON form with every block's context requirements dropped, so that its
    templates match without a home (no areas, no device domains)."""
    return {
        **raw,
        "intents": {
            name: {
                **intent,
                "data": [
                    {
                        k: v
                        for k, v in d.items()
                        if k not in ("requires_context", "excludes_context")
                    }
                    for d in intent.get("data", [])
                ],
            }
            for name, intent in raw.get("intents", {}).items()
        },
    }


def _block_domains(data: Any) -> tuple[str, ...]:
    domain = (data.requires_context or {}).get("domain") or ()
    return (domain,) if isinstance(domain, str) else tuple(domain)


def load_templates(language: str = DEFAULT_LANGUAGE) -> list[Template]:
    """Every sentence template of home-assistant-intents for a language, with a stable id."""
    intents = package_intents(language).parsed
    out = []
    for name in sorted(intents.intents):
        for di, data in enumerate(intents.intents[name].data):
            rules = {**intents.expansion_rules, **data.expansion_rules}
            lists = {**intents.slot_lists, **data.slot_lists}
            domains = _block_domains(data)
            for si, sent in enumerate(_in_source_order(data)):
                out.append(Template(f"{name}/{di}/{si}", name, sent, rules, lists, domains))
    return out


EXTRA_TEMPLATES = get_language(DEFAULT_LANGUAGE).extra_templates


def extra_template_texts(path: str | Path = EXTRA_TEMPLATES) -> dict[str, list[str]]:
    """The extra templates file as {intent: [template text]} (empty when there is none)."""
    import yaml

    path = Path(path)
    if not path.exists():
        return {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): [str(t) for t in v or []] for k, v in (doc.get("intents") or {}).items()}


def load_extra_templates(
    path: str | Path | None = None, language: str = DEFAULT_LANGUAGE
) -> list[Template]:
    """Hand-written templates that extend the package's phrasings (`export/extra/`, for
    Chinese `export/extra/zh-CN/`), in hassil syntax, with the language's expansion rules and
    each intent's own slot lists. They are training-only: their authors never saw the
    evaluation sets in `export/eval/`."""
    from hassil.parse_expression import parse_sentence

    path = path or get_language(language).extra_templates
    texts = extra_template_texts(path)
    if not texts:
        return []
    intents = package_intents(language).parsed
    known_slots = _template_slot_names(intents)
    out = []
    for name, sentences in sorted(texts.items()):
        if name not in intents.intents:
            raise DataError(f"{path}: unknown intent {name!r}")
        rules, lists = dict(intents.expansion_rules), dict(intents.slot_lists)
        for data in intents.intents[name].data:
            rules.update(data.expansion_rules)
            lists.update(data.slot_lists)
        for i, text in enumerate(sentences):
            where = f"{path}: {name} #{i + 1} {text!r}"
            try:
                sent = parse_sentence(text, keep_text=True)
            except Exception as exc:  # hassil raises several types for bad syntax
                raise DataError(f"{where}: {exc}") from None
            try:
                refs = list(_slot_refs(sent.expression, rules))
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from None
            for slot, list_name in refs:
                if slot not in known_slots:
                    raise DataError(f"{where}: slot {slot!r} is not one of the package's slots")
                if list_name not in lists and list_name not in ("name", "area", "floor"):
                    raise DataError(f"{where}: unknown list {{{list_name}}}")
            out.append(Template(f"extra:{name}/{i}", name, sent, rules, lists))
    return out


def _slot_refs(
    exp: Any, rules: dict[str, Any], seen: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str]]:
    """(slot name, list name) of every list reference of a template expression."""
    from hassil.expression import Alternative, ListReference, Permutation, RuleReference
    from hassil.expression import Sequence as Seq

    if isinstance(exp, ListReference):
        yield exp.slot_name, exp.list_name
    elif isinstance(exp, (Alternative, Seq, Permutation)):
        for it in exp.items:
            yield from _slot_refs(it, rules, seen)
    elif isinstance(exp, RuleReference):
        if exp.rule_name not in rules:
            raise DataError(f"unknown expansion rule <{exp.rule_name}>")
        if exp.rule_name not in seen:
            yield from _slot_refs(rules[exp.rule_name].expression, rules, seen | {exp.rule_name})


def _template_slot_names(intents: Any) -> set[str]:
    out: set[str] = set()
    for intent in intents.intents.values():
        for data in intent.data:
            rules = {**intents.expansion_rules, **data.expansion_rules}
            for sent in _in_source_order(data):
                out.update(slot for slot, _ in _slot_refs(sent.expression, rules))
    return out


def _in_source_order(data: Any) -> list[Any]:
    from hassil.parse_expression import parse_sentence

    return [parse_sentence(t, keep_text=True) for t in data.sentence_texts]


def _sample_template(
    t: Template,
    pools: Pools,
    rng: random.Random,
    n: int,
    kind: str,
    language: str = DEFAULT_LANGUAGE,
) -> list[Example]:
    sampler = TemplateSampler(pools, rng, language)
    lang = sampler.language
    probe = Tokenizer(list(SPECIAL_TOKENS), lang.tokenizer_rules)
    out: dict[str, Example] = {}
    for _ in range(n * 3):
        if len(out) >= n:
            break
        text, spans = sampler.sample(t.sentence, t.rules, t.lists, t.intent, t.domains)
        text, spans = _decorate(text, spans, rng, lang)
        if not text or text in out:
            continue
        if lang.odd is not None and lang.odd(text, spans):
            continue
        ex = Example(text, t.intent, spans, t.id, kind)
        try:
            bio_tags(ex, probe)  # a number word glued to a unit ("ten thousandk") cuts a token
        except DataError:
            continue
        out[text] = ex
    return list(out.values())


def generate(
    seed: int = 13,
    per_intent: int = 400,
    min_per_template: int = 4,
    max_per_template: int = 40,
    train_scale: float = 1.0,
    extra: bool = True,
    extra_scale: float = 0.5,
    more_train_areas: int = 150,
    language: str = DEFAULT_LANGUAGE,
) -> dict[str, list[Example]]:
    """Sample train/val/test utterances from the templates, deterministically from `seed`.

    Split: per intent with at least 5 templates, ~12 % of templates are held out for test and
    ~8 % for validation. Slot values (names, areas, floors, wildcards) come from disjoint
    pools per split. The test split has three kinds: `random` (training templates and
    values, sentences not in train), `template` (held-out templates) and `values` (training
    templates with test-only values); validation mirrors them. With `extra`, the hand-written
    templates of `export/extra/templates.yaml` add training sentences (train only).
    `language` picks the templates, value pools and extra templates (default English).
    """
    lang = get_language(language)
    rng = random.Random(seed)
    pools = lang.make_pools(seed, more_train_areas)
    templates = load_templates(language)
    by_intent: dict[str, list[Template]] = defaultdict(list)
    for t in templates:
        by_intent[t.intent].append(t)

    role: dict[str, str] = {}
    for _intent, ts in sorted(by_intent.items()):
        ids = [t.id for t in ts]
        rng.shuffle(ids)
        n_test = int(len(ids) * 0.12) if len(ids) >= 5 else 0
        n_val = max(1, int(len(ids) * 0.08)) if len(ids) >= 8 else 0
        for i, tid in enumerate(ids):
            role[tid] = "test" if i < n_test else "val" if i < n_test + n_val else "train"

    # Training sentences draw from their own random stream, so that `train_scale` changes
    # the training set only: validation and test stay the same sentences.
    train_rng = random.Random(f"{seed}-train")
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for _intent, ts in sorted(by_intent.items()):
        k = max(min_per_template, min(max_per_template, -(-per_intent // len(ts))))
        k_train = max(1, round(k * train_scale))
        for t in ts:
            r = role[t.id]
            sample = functools.partial(_sample_template, t, language=language)
            if r == "train":
                splits["train"] += sample(pools["train"], train_rng, k_train, "train")
                splits["val"] += sample(pools["train"], rng, max(1, k // 8), "random")
                splits["test"] += sample(pools["train"], rng, max(1, k // 6), "random")
                splits["val"] += sample(pools["val"], rng, max(1, k // 8), "values")
                splits["test"] += sample(pools["test"], rng, max(1, k // 6), "values")
            else:
                splits[r] += sample(pools["train"], rng, max(2, k // 3), "template")
    # Hand-written extra templates (export/extra/) add phrasings to training only.
    for t in load_extra_templates(language=language) if extra else []:
        n_package = max(1, len(by_intent.get(t.intent, [])))
        k = max(min_per_template, min(max_per_template, -(-per_intent // n_package)))
        k_extra = max(1, round(k * train_scale * extra_scale))
        splits["train"] += _sample_template(
            t, pools["train"], train_rng, k_extra, "train", language
        )

    if lang.first_match_labels:
        templates_by_id = {t.id: t for t in templates}
        splits = _first_match_labels(splits, templates_by_id, lang)

    # A text that two intents produce ("all fans off") has no single right label: drop it.
    labels: dict[str, set[str]] = defaultdict(set)
    for exs in splits.values():
        for ex in exs:
            labels[ex.text].add(ex.intent)
    ambiguous = {t for t, ls in labels.items() if len(ls) > 1}
    train_texts = {ex.text for ex in splits["train"]}
    out: dict[str, list[Example]] = {}
    for name, exs in splits.items():
        seen: set[str] = set()
        keep = []
        for ex in exs:
            if ex.text in ambiguous or ex.text in seen:
                continue
            if name != "train" and ex.text in train_texts:
                continue
            seen.add(ex.text)
            keep.append(ex)
        random.Random(seed + len(name)).shuffle(keep)
        out[name] = keep
    return out


def _shape(ex: Example) -> str:
    """The text with each slot value replaced by its slot name: "停止{name}计时器"."""
    out, pos = [], 0
    for sp in sorted(ex.slots, key=lambda sp: sp.start):
        out += [ex.text[pos : sp.start], "{" + sp.slot + "}"]
        pos = sp.end
    return "".join([*out, ex.text[pos:]])


def _first_match_labels(
    splits: dict[str, list[Example]], templates: dict[str, Template], lang: Language
) -> dict[str, list[Example]]:
    """Intents whose package templates (those that need no device domain) produce the same
    words around the same slots share sentences (zh-CN: "停止{name}计时器" is both
    HassCancelTimer and HassPauseTimer). Each sentence of such templates takes, of those
    intents, the one hassil recognises first (the one Home Assistant runs). Templates bound
    to a domain ("打开{name}" of a lock unlocks it) and the extra templates keep their labels."""
    from hassil import Intents, recognize_all
    from hassil.intents import SlotList, TextSlotList

    def free(ex: Example) -> bool:  # a package template that needs no device domain
        t = templates.get(ex.template)
        return t is not None and not t.domains

    intents_of: dict[str, set[str]] = defaultdict(set)
    for exs in splits.values():
        for ex in exs:
            if free(ex):
                intents_of[_shape(ex)].add(ex.intent)
    groups: list[set[str]] = []
    for shared in (v for v in intents_of.values() if len(v) > 1):
        joined = [g for g in groups if g & shared]
        groups = [g for g in groups if not g & shared] + [set(shared).union(*joined)]
    if not groups:
        return splits
    raw = package_intents(lang.code).raw

    def grammar(group: set[str]) -> Any:
        blocks = {
            name: {
                **intent,
                "data": [
                    d for d in intent["data"] if "domain" not in (d.get("requires_context") or {})
                ],
            }
            for name, intent in raw["intents"].items()
            if name in group
        }
        return Intents.from_dict(without_context({**raw, "intents": blocks}))

    grammars = {intent: (group, grammar(group)) for group in groups for intent in group}
    affixes = sorted((*lang.skip_prefixes, *lang.skip_suffixes), key=len, reverse=True)

    def relabel(ex: Example) -> Example:
        group, g = grammars[ex.intent]
        text = ex.text
        for a in affixes:  # the politeness words generation added
            if text.startswith(a + lang.joiner):
                text = text[len(a + lang.joiner) :]
            elif text.endswith(lang.joiner + a):
                text = text[: -len(lang.joiner + a)]
        values: dict[str, list[str]] = defaultdict(list)
        for sp in ex.slots:
            values[sp.slot].append(ex.text[sp.start : sp.end])
        lists: dict[str, SlotList] = {
            n: TextSlotList.from_strings(values.get(n) or ["-"]) for n in ("name", "area", "floor")
        }
        for result in recognize_all(text, g, slot_lists=lists):
            if result.intent.name in group:
                if result.intent.name == ex.intent:
                    return ex
                return Example(ex.text, result.intent.name, ex.slots, ex.template, ex.kind)
        return ex

    return {
        name: [relabel(ex) if ex.intent in grammars and free(ex) else ex for ex in exs]
        for name, exs in splits.items()
    }


def summarize(splits: dict[str, list[Example]]) -> dict[str, Any]:
    """Counts per split, per kind and per intent (for the report)."""
    return {
        name: {
            "examples": len(exs),
            "templates": len({e.template for e in exs}),
            "intents": len({e.intent for e in exs}),
            "kinds": dict(Counter(e.kind for e in exs)),
        }
        for name, exs in splits.items()
    }


def trained_split(training: dict[str, Any], data_dir: str | None, split: str) -> list[Example]:
    """The examples of `split` (train, val, test) a checkpoint was trained with, from its
    `training` record: the language's generated file (or `data_dir`'s), else the user's JSONL
    file it names, else the split generated again with its seed."""
    language = str(training.get("language", DEFAULT_LANGUAGE))
    path = Path(data_dir or get_language(language).data_dir) / f"{split}.jsonl"
    if path.exists():
        return read_jsonl(path)
    if training.get("data") == "jsonl" and training.get(split):
        return read_jsonl(training[split])
    return generate(seed=int(training.get("seed", 13)), language=language)[split]
