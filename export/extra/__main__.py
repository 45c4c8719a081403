"""python -m export.extra [--language CODE] [FILE]: check the extra templates and print
sampled sentences."""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter

from export.data import DataError, TemplateSampler, load_extra_templates
from export.languages import DEFAULT_LANGUAGE, LANGUAGES, get_language


def main(argv: list[str]) -> int:
    """Parse every template, sample a few sentences of each, print them with their slots."""
    p = argparse.ArgumentParser(prog="python -m export.extra", description=__doc__)
    p.add_argument("file", nargs="?", help="default: the language's extra templates")
    p.add_argument("--language", choices=list(LANGUAGES), default=DEFAULT_LANGUAGE)
    args = p.parse_args(argv)
    lang = get_language(args.language)
    try:
        templates = load_extra_templates(args.file, language=args.language)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pools = lang.make_pools(13, 0)["train"]
    sampler = TemplateSampler(pools, random.Random(0), args.language)
    for t in templates:
        for _ in range(3):
            text, spans = sampler.sample(t.sentence, t.rules, t.lists, t.intent, t.domains)
            slots = ", ".join(f"{s.slot}={text[s.start : s.end]!r}" for s in spans)
            print(f"{t.intent:32s} {text}   [{slots}]")
    per = Counter(t.intent for t in templates)
    print(f"\n{len(templates)} templates, {len(per)} intents: {dict(sorted(per.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
