"""python -m export.extra [FILE]: check the extra templates and print sampled sentences."""

from __future__ import annotations

import random
import sys
from collections import Counter

from export.data import EXTRA_TEMPLATES, DataError, TemplateSampler, load_extra_templates
from export.pools import make_pools


def main(argv: list[str]) -> int:
    """Parse every template, sample a few sentences of each, print them with their slots."""
    path = argv[0] if argv else EXTRA_TEMPLATES
    try:
        templates = load_extra_templates(path)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pools = make_pools(13)["train"]
    sampler = TemplateSampler(pools, random.Random(0))
    for t in templates:
        for _ in range(3):
            text, spans = sampler.sample(t.sentence, t.rules, t.lists, t.intent)
            slots = ", ".join(f"{s.slot}={text[s.start : s.end]!r}" for s in spans)
            print(f"{t.intent:32s} {text}   [{slots}]")
    per = Counter(t.intent for t in templates)
    print(f"\n{len(templates)} templates, {len(per)} intents: {dict(sorted(per.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
