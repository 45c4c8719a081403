"""The languages the trainer generates data for.

Each language names its templates (home-assistant-intents' `<code>.json`), the value pools that
fill the slots the package leaves to the user's home, the tokenizer rules its model carries,
its hand-written extra templates and evaluation sets, and how generated sentences are
decorated. English is the default and the reference: its data is pinned by hash.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelspec.tokenizer import CJK_PATTERN, TokenizerRules

HERE = Path(__file__).resolve().parent
DEFAULT_LANGUAGE = "en"


class UnknownLanguage(ValueError):
    """A language code the trainer has no value pools for."""


@dataclass(frozen=True)
class Language:
    """Everything that differs between the languages the trainer generates data for."""

    code: str
    tokenizer_rules: TokenizerRules
    # seed, more training areas -> {"train"|"val"|"test": export.pools.Pools}
    make_pools: Callable[[int, int], dict[str, Any]]
    # pools, rng, n -> out-of-scope training sentences
    out_of_scope: Callable[[Any, random.Random, int], list[str]]
    # intent, the domains its template block requires -> the name pools that fill {name}
    name_domains: Callable[[str, Sequence[str]], Sequence[str]]
    extra_templates: Path
    eval_dir: Path
    data_dir: str  # where `python -m export train/data` write the generated splits
    model_stem: str  # `python -m export train` writes <stem>.pt and <stem>.report.json
    skip_prefixes: tuple[str, ...]  # politeness words the grammar skips ("please")
    skip_suffixes: tuple[str, ...]
    joiner: str  # between such a word and the sentence
    number_as_digits: float  # share of numbers written as digits (the rest as words)
    number_rulesets: tuple[str, ...] = ()  # RBNF rulesets for number words (empty: all)
    number_words: str = ""  # how the server reads number words (SlotValues.number_words)
    cjk: bool = False  # whitespace next to a CJK character is dropped (hassil does too)
    # A generated sentence that reads wrong though a template produces it ("一楼楼的灯").
    odd: Callable[[str, Sequence[Any]], bool] | None = None
    max_name_tokens: int = 4  # longest {name}/{area}/{floor} when marking paraphrase kinds
    # The paraphrase file keeps each sentence's kind (`python -m export kinds` writes it);
    # otherwise kinds are marked at evaluation (the file belongs to the set's writers).
    eval_kinds_in_file: bool = True
    # Sentences two intents' templates produce with the same words around the same slots
    # take the intent hassil recognises first (English data keeps the package's labels).
    first_match_labels: bool = False
    # Particles a slot span never ends with: the package's lists hold "开着[的]" and the
    # templates add "[的]" after them, so "开着的" would be tagged two ways.
    trailing_particles: tuple[str, ...] = ()


def _english() -> Language:
    from export import pools

    return Language(
        code="en",
        tokenizer_rules=TokenizerRules(),
        make_pools=pools.make_pools,
        out_of_scope=pools.out_of_scope_sentences,
        name_domains=lambda intent, _context: pools.INTENT_NAME_DOMAINS.get(
            intent, pools.ANY_DEVICE
        ),
        extra_templates=HERE / "extra" / "templates.yaml",
        eval_dir=HERE / "eval",
        data_dir="build/data",
        model_stem="models/intent",
        skip_prefixes=("please", "can you", "could you", "would you", "hey", "ok"),
        skip_suffixes=("please", "for me", "thanks"),
        joiner=" ",
        number_as_digits=0.85,
        number_words="en",
    )


def _chinese() -> Language:
    from export import pools_zh

    return Language(
        code="zh-CN",
        tokenizer_rules=TokenizerRules(pattern=CJK_PATTERN),
        make_pools=pools_zh.make_pools,
        out_of_scope=pools_zh.out_of_scope_sentences,
        name_domains=pools_zh.name_domains,
        extra_templates=HERE / "extra" / "zh-CN" / "templates.yaml",
        eval_dir=HERE / "eval" / "zh-CN",
        data_dir="build/data/zh-CN",
        model_stem="models/intent-zh",
        skip_prefixes=("请", "麻烦", "麻烦你"),
        skip_suffixes=("谢谢",),
        joiner="",
        number_as_digits=0.7,
        # "二" and "两" (2 before a measure word or a unit: "两分钟", "两百")
        number_rulesets=("spellout-cardinal", "spellout-cardinal-alternate2"),
        number_words="zh",
        cjk=True,
        odd=pools_zh.odd_sentence,
        max_name_tokens=8,
        eval_kinds_in_file=False,
        first_match_labels=True,
        trailing_particles=("的",),
    )


_FACTORIES: dict[str, Callable[[], Language]] = {"en": _english, "zh-CN": _chinese}
LANGUAGES = tuple(_FACTORIES)


@functools.cache
def get_language(code: str = DEFAULT_LANGUAGE) -> Language:
    """The language with this code; UnknownLanguage names the known ones."""
    try:
        factory = _FACTORIES[code]
    except KeyError:
        raise UnknownLanguage(
            f"unknown language {code!r} (known: {', '.join(LANGUAGES)})"
        ) from None
    return factory()
