"""Home Assistant's own intent test sentences through a served model: an outside measure.

    python -m export.ha_tests DIR [--model models/intent.onnx | --target HOST:PORT]
                                  [--context] [--json OUT]

DIR is one language's test directory of a checkout of github.com/home-assistant/intents that
the user provides (`tests/en`, `tests/zh-cn`); none of its files is part of this repository, and
nothing here trains or tunes on them. Every `tests:` entry of `DIR/*.yaml` and `DIR/*/*.yaml`
(files whose name starts with `_` are skipped; `_fixtures.yaml` is the home) is sent through the
Python client to a real server: one started here on a free port with `--model`, or `--target`.
With `--context` each request carries the fixtures' floors, areas and entities (plus a file's
own `entities`/`areas`, as the per-intent folders declare them) as its context.

Reported:
- intent accuracy: the answer's intent is the test's (`no_intent` counts as wrong); also over the
  sentences whose intent the model has;
- slot values found: for each expected slot value (a list: any of its items), whether the answer
  carries it, as a slot of that name whose text, canonical value, entry id or entry name equals
  it (case-insensitive, `_` read as a space, numbers compared as numbers; a value that is a
  fixtures id also matches that entry's name and aliases), or as an implied slot of that name.
  Left out, and counted: `name: all`, values that only the test's own `context` supplies (the
  satellite's area of "in here"), and values that are not a value (a mapping);
- per-intent misses and the most common kinds of miss (`no_intent`, `A -> B`, `slot x missing`,
  `slot x other value`), with examples, all of it in `--json`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from client.api import Client, RnnServeError
from rnnserve.v1 import rnnserve_pb2 as pb
from server.launch import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = "_fixtures.yaml"
SERVE = ("--port", "0", "--metrics-port", "-1")  # a server of its own, no metrics endpoint
TOP_KINDS = 15
EXAMPLES_PER_KIND = 5


@dataclass
class Case:
    """One test sentence with what the test expects."""

    file: str
    sentence: str
    intent: str
    slots: dict[str, list[str]]  # slot -> acceptable values (already normalized)
    home: dict[str, Any]  # the context it is sent with under --context


@dataclass
class Tally:
    """Counts over a set of answered cases."""

    sentences: int = 0
    intent_right: int = 0
    known_sentences: int = 0  # sentences whose intent the model has
    known_right: int = 0
    values: int = 0
    values_found: int = 0
    left_out_all: int = 0
    left_out_context: int = 0
    left_out_other: int = 0
    per_intent: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    kinds: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


def norm(value: object) -> str:
    """A value as compared: text lower-cased, `_` as a space, spaces collapsed; numbers as
    numbers ("50" and 50.0 are "50")."""
    text = " ".join(str(value).replace("_", " ").split()).lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:g}"


def _items(value: object) -> list[object] | None:
    """The acceptable values of one expected slot: a scalar, a list, or {value: ...}; None for
    a mapping that is not a value (Home Assistant's `alternate_state`)."""
    if isinstance(value, Mapping):
        if "value" not in value:
            return None
        value = value["value"]
    if isinstance(value, list):
        return list(value)
    return [value]


def read_home(path: Path) -> dict[str, Any]:
    """The fixtures' floors, areas and entities (empty when the file is absent)."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {g: list(data.get(g) or []) for g in ("floors", "areas", "entities")}


def id_names(home: Mapping[str, Any]) -> dict[str, list[str]]:
    """Normalized entry id -> its normalized name and aliases, over every group."""
    out: dict[str, list[str]] = {}
    for group in ("floors", "areas", "entities"):
        for e in home.get(group) or []:
            if e.get("id") and e.get("name"):
                names = [e["name"], *(e.get("aliases") or [])]
                out[norm(e["id"])] = [norm(n) for n in names]
    return out


def _file_home(base: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The fixtures plus a file's own areas and entities (the per-intent folders give entities
    a name and domain only; the id is made from them)."""
    home = {g: list(base.get(g) or []) for g in ("floors", "areas", "entities")}
    for e in data.get("areas") or []:
        if isinstance(e, Mapping) and e.get("name"):
            home["areas"].append({"name": e["name"], "id": e.get("id") or norm(e["name"])})
    for e in data.get("entities") or []:
        if isinstance(e, Mapping) and e.get("name"):
            slug = norm(e["name"]).replace(" ", "_")
            entity = {"name": e["name"], "id": e.get("id") or f"{e.get('domain', 'x')}.{slug}"}
            home["entities"].append(
                {**entity, **({"domain": e["domain"]} if "domain" in e else {})}
            )
    return home


def read_cases(directory: Path, tally: Tally) -> tuple[list[Case], list[str]]:
    """Every test sentence of the directory's files, and the files read; left-out slot values
    are counted on `tally`."""
    base = read_home(directory / FIXTURES)
    files = sorted(
        p
        for p in [*directory.glob("*.yaml"), *directory.glob("*/*.yaml")]
        if not p.name.startswith("_")
    )
    cases: list[Case] = []
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        home = _file_home(base, data)
        ids = id_names(home)
        rel = str(path.relative_to(directory))
        for test in data.get("tests") or []:
            cases.extend(_test_cases(rel, path, test, home, ids, tally))
    return cases, [str(p.relative_to(directory)) for p in files]


def _test_cases(
    rel: str,
    path: Path,
    test: Mapping[str, Any],
    home: dict[str, Any],
    ids: Mapping[str, list[str]],
    tally: Tally,
) -> Iterator[Case]:
    """One `tests:` entry's sentences. The intent is `intent.name` (`intents.name` in some
    files), or the folder's name in the per-intent folders, whose slots sit on the test."""
    spec = test.get("intent") or test.get("intents") or {}
    if not isinstance(spec, Mapping):
        spec = {}
    intent = str(spec.get("name") or path.parent.name)
    raw = spec.get("slots", test.get("slots")) or {}
    slots = raw if isinstance(raw, Mapping) else {}
    given = {**(test.get("context") or {}), **(spec.get("context") or {})}
    for sentence in test.get("sentences") or []:
        sentence = str(sentence)
        expected: dict[str, list[str]] = {}
        for name, value in slots.items():
            items = _items(value)
            if items is None:
                tally.left_out_other += 1
                continue
            values = [norm(v) for v in items if v is not None]
            if name == "name" and values == ["all"]:
                tally.left_out_all += 1
                continue
            if name in given and norm(given[name]) in values and not _said(values, sentence):
                tally.left_out_context += 1
                continue
            for v in list(values):
                values.extend(ids.get(v, []))
            expected[str(name)] = list(dict.fromkeys(values))
        yield Case(rel, sentence, intent, expected, home)


def _said(values: Sequence[str], sentence: str) -> bool:
    """Whether any of the values is written in the sentence."""
    text = norm(sentence)
    return any(v and v in text for v in values)


def found(answer: pb.ParseResponse, name: str, values: Sequence[str]) -> str:
    """'' when the answer carries one of the values for slot `name`; else the kind of miss."""
    wanted = set(values)
    present = False
    for s in answer.slots:
        if s.name != name:
            continue
        present = True
        forms = {s.value, s.canonical, s.entry_id, s.entry_name}
        if wanted & {norm(f) for f in forms if f}:
            return ""
    for s in answer.implied_slots:
        if s.name == name:
            present = True
            if norm(s.value) in wanted:
                return ""
    return f"slot {name} other value" if present else f"slot {name} missing"


def describe(answer: pb.ParseResponse) -> dict[str, Any]:
    """The parts of an answer a reader of the misses needs."""
    return {
        "intent": "" if answer.no_intent else answer.intent.name,
        "no_intent": answer.no_intent,
        "slots": [
            {
                k: v
                for k, v in (
                    ("name", s.name),
                    ("value", s.value),
                    ("canonical", s.canonical),
                    ("entry_id", s.entry_id),
                )
                if v
            }
            for s in answer.slots
        ],
        "implied": {s.name: s.value for s in answer.implied_slots},
    }


def score(
    cases: Sequence[Case], answers: Sequence[pb.ParseResponse], known: set[str], tally: Tally
) -> None:
    """Add each case's intent and slot results to `tally`."""
    for case, answer in zip(cases, answers, strict=True):
        got = "" if answer.no_intent else answer.intent.name
        kinds: list[str] = []
        tally.sentences += 1
        row = tally.per_intent[case.intent]
        row["sentences"] += 1
        if case.intent in known:
            tally.known_sentences += 1
        if got == case.intent:
            tally.intent_right += 1
            tally.known_right += case.intent in known
        else:
            row["intent wrong"] += 1
            kinds.append("no_intent" if answer.no_intent else f"{case.intent} -> {got}")
        for name, values in case.slots.items():
            tally.values += 1
            row["slot values"] += 1
            miss = found(answer, name, values)
            if miss:
                row["slot values missed"] += 1
                kinds.append(miss)
            else:
                tally.values_found += 1
        for kind in kinds:
            tally.kinds[kind] += 1
            if len(tally.examples[kind]) < EXAMPLES_PER_KIND:
                tally.examples[kind].append(
                    {
                        "file": case.file,
                        "sentence": case.sentence,
                        "intent": case.intent,
                        "slots": case.slots,
                        "answer": describe(answer),
                    }
                )


def run(client: Client, cases: Sequence[Case], context: bool, tally: Tally) -> None:
    """Send the cases, one parse_many per file (a file shares its context), and score them."""
    known = set(client.info().intents)
    by_file: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        by_file[case.file].append(case)
    for group in by_file.values():
        kw: dict[str, Any] = {"context": group[0].home} if context else {}
        answers: list[pb.ParseResponse] = []
        for a in client.parse_many([c.sentence for c in group], **kw):
            if isinstance(a, RnnServeError):
                raise SystemExit(f"{group[0].file}: {a}")
            answers.append(a)
        score(group, answers, known, tally)


def summary(
    tally: Tally, files: Sequence[str], args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    """The report as one JSON-ready dict."""
    top = tally.kinds.most_common(TOP_KINDS)
    return {
        "directory": str(args.directory),
        "model": args.target or str(args.model),
        "context": args.context,
        "files": len(files),
        "sentences": tally.sentences,
        "intent_accuracy": tally.intent_right / max(tally.sentences, 1),
        "sentences_with_a_known_intent": tally.known_sentences,
        "intent_accuracy_known_intents": tally.known_right / max(tally.known_sentences, 1),
        "slot_values": tally.values,
        "slot_values_found": tally.values_found / max(tally.values, 1),
        "left_out": {
            "name_all": tally.left_out_all,
            "context_only": tally.left_out_context,
            "not_a_value": tally.left_out_other,
        },
        "per_intent": {k: dict(v) for k, v in sorted(tally.per_intent.items())},
        "miss_kinds": [{"kind": k, "count": n, "examples": tally.examples[k]} for k, n in top],
        "seconds": round(seconds, 1),
        "file_list": list(files),
    }


def print_report(report: Mapping[str, Any]) -> None:
    """The report for a terminal."""
    left = report["left_out"]
    print(f"{report['directory']}  model {report['model']}  context {report['context']}")
    print(f"files {report['files']}  sentences {report['sentences']}  ({report['seconds']} s)")
    print(
        f"intent accuracy {report['intent_accuracy']:.3f}"
        f"  (over the {report['sentences_with_a_known_intent']} sentences whose intent the"
        f" model has: {report['intent_accuracy_known_intents']:.3f})"
    )
    print(
        f"slot values found {report['slot_values_found']:.3f} of {report['slot_values']}"
        f"  (left out: name all {left['name_all']}, context only {left['context_only']},"
        f" not a value {left['not_a_value']})"
    )
    print("\nmisses per intent (sentences, intent wrong, slot values missed / slot values):")
    for intent, row in report["per_intent"].items():
        if row.get("intent wrong") or row.get("slot values missed"):
            print(
                f"  {intent:32} {row['sentences']:4} {row.get('intent wrong', 0):4}"
                f" {row.get('slot values missed', 0):4} / {row.get('slot values', 0)}"
            )
    print(f"\nmost common kinds of miss (top {TOP_KINDS}):")
    for k in report["miss_kinds"]:
        print(f"  {k['count']:4}  {k['kind']}   e.g. {k['examples'][0]['sentence']!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "directory", type=Path, help="tests/<language> of a home-assistant/intents checkout"
    )
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "intent.onnx")
    ap.add_argument("--target", default="", help="use a running server instead of starting one")
    ap.add_argument("--context", action="store_true", help="send the fixtures as the context")
    ap.add_argument("--json", type=Path, help="write the full report here")
    args = ap.parse_args(argv)
    tally = Tally()
    cases, files = read_cases(args.directory, tally)
    if not cases:
        raise SystemExit(f"no test sentences under {args.directory}")
    t0 = time.perf_counter()
    try:
        server = None if args.target else ServerProcess(*SERVE, "--model", str(args.model))
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    try:
        target = server.target if server is not None else args.target
        with Client(target, timeout=60) as client:
            run(client, cases, args.context, tally)
    finally:
        if server is not None:
            server.stop()
    report = summary(tally, files, args, time.perf_counter() - t0)
    if args.json:
        args.json.write_text(
            json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
