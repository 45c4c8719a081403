"""Data: generation from home-assistant-intents, the split, JSONL, and bad data."""

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from export.data import (
    DataError,
    Example,
    Span,
    bio_tags,
    generate,
    load_extra_templates,
    load_templates,
    parse_example,
    read_jsonl,
)
from export.pools import WordListError, load_words, make_pools
from modelspec.names import SPECIAL_TOKENS
from modelspec.tokenizer import Tokenizer

TOK = Tokenizer(list(SPECIAL_TOKENS))


def test_generation_is_deterministic_from_the_seed(splits):
    again = generate(seed=13)
    assert [e.to_json() for e in again["test"][:200]] == [e.to_json() for e in splits["test"][:200]]
    other = generate(seed=14)
    assert [e.text for e in other["train"][:50]] != [e.text for e in splits["train"][:50]]


def test_every_intent_is_trained_including_what_time_is_it(splits):
    intents = {e.intent for e in splits["train"]}
    assert len(intents) >= 40
    assert "HassGetCurrentTime" in intents
    assert any("what time is it" in e.text.lower() for e in splits["train"])


def test_slot_spans_land_on_token_boundaries(splits):
    for ex in splits["train"][:3000]:
        tokens, tags = bio_tags(ex, TOK)
        assert len(tokens) == len(tags)
        assert sum(t.startswith("B-") for t in tags) == len(
            [s for s in ex.slots if s.end > s.start]
        )


def test_split_holds_out_templates_and_values(splits):
    train_templates = {e.template for e in splits["train"]}
    held = [e for e in splits["test"] if e.kind == "template"]
    assert held and all(e.template not in train_templates for e in held)

    def values(exs, slot):
        return {e.text[s.start : s.end].lower() for e in exs for s in e.slots if s.slot == slot}

    for slot in ("area", "floor"):
        test_vals = values([e for e in splits["test"] if e.kind == "values"], slot)
        assert test_vals and not (test_vals & values(splits["train"], slot))
    assert not {e.text for e in splits["test"]} & {e.text for e in splits["train"]}


def test_pools_are_disjoint_between_splits():
    pools = make_pools(13)
    assert not set(pools["train"].areas) & set(pools["test"].areas)
    train_names = {n for v in pools["train"].names.values() for n in v}
    test_names = {n for v in pools["test"].names.values() for n in v}
    assert len(train_names) > 300 and not train_names & test_names


def test_jsonl_round_trip(tmp_path):
    ex = Example("turn on the kitchen lights", "HassTurnOn", (Span("area", 12, 19),))
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ex.to_json()) + "\n\n")
    (back,) = read_jsonl(path)
    assert back == ex
    assert bio_tags(back, TOK)[1] == ["O", "O", "O", "B-area", "O"]


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"text": "  ", "intent": "X"}, "empty text"),
        ({"text": "hi", "intent": ""}, "missing intent"),
        (
            {"text": "hi", "intent": "X", "slots": [{"slot": "a", "start": 0, "end": 9}]},
            "outside the text",
        ),
        (
            {
                "text": "hi there",
                "intent": "X",
                "slots": [{"slot": "a", "start": 0, "end": 5}, {"slot": "b", "start": 3, "end": 8}],
            },
            "overlap",
        ),
    ],
)
def test_bad_examples_are_named(obj, message):
    with pytest.raises(DataError, match=message):
        parse_example(obj, "f.jsonl:3")


def test_span_that_cuts_a_token_is_rejected():
    with pytest.raises(DataError, match="cuts a token"):
        bio_tags(Example("turn on kitchen", "X", (Span("area", 9, 15),)), TOK)


def test_train_cli_rejects_unknown_label_and_empty_text(tmp_path):
    good = [{"text": f"turn on lamp {i}", "intent": "On"} for i in range(20)]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(o) for o in good))
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"text": "sing a song", "intent": "Sing"}) + "\n")
    cmd = [
        sys.executable,
        "-m",
        "export",
        "train",
        "--train-file",
        str(train),
        "--val-file",
        str(train),
        "--test-file",
        str(test),
        "--epochs",
        "1",
        "--no-progress",
        "--data-dir",
        str(tmp_path / "d"),
        "--out",
        str(tmp_path / "m.pt"),
        "--report",
        str(tmp_path / "r.json"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown intent label 'Sing'" in out.stderr
    assert "Traceback" not in out.stderr

    test.write_text(json.dumps({"text": "", "intent": "On"}) + "\n")
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2 and f"{test}:1: empty text" in out.stderr


def test_every_intent_and_template_is_trained_or_held_out_on_purpose(splits):
    templates = load_templates()
    trained = {e.template for e in splits["train"]}
    held = {e.template for s in ("val", "test") for e in splits[s] if e.kind == "template"}
    assert {t.intent for t in templates} == {e.intent for e in splits["train"]}
    assert len({t.intent for t in templates}) >= 42
    extra = {t.id for t in load_extra_templates()}
    assert {t.id for t in templates} | extra == trained | held and not trained & held


def test_wildcard_slots_are_filled(splits):
    slots = {s.slot for e in splits["train"] for s in e.slots}
    assert {"message", "search_query", "item", "name"} <= slots
    for intent in ("HassBroadcast", "HassMediaSearchAndPlay", "HassShoppingListAddItem"):
        assert any(e.intent == intent and e.slots for e in splits["train"])


def test_held_out_names_are_never_seen_in_training(splits):
    def values(exs, slot):
        return {e.text[s.start : s.end].lower() for e in exs for s in e.slots if s.slot == slot}

    held = [e for e in splits["test"] if e.kind == "values"]
    for slot in ("name", "area", "floor"):
        assert values(held, slot) - values(splits["train"], slot)
    pools = make_pools(13)
    for split in ("val", "test"):
        assert not set(pools[split].areas) & set(pools["train"].areas)
        names = {
            n for d, v in pools[split].names.items() if d not in ("todo", "weather") for n in v
        }
        assert len(names) > 100
        assert not names & {n for v in pools["train"].names.values() for n in v}


def test_balanced_walk_reaches_every_alternative():
    import random

    from hassil.parse_expression import parse_sentence

    from export.data import TemplateSampler

    sent = parse_sentence("(turn|switch|put|flip|power) (on|up) [the] (lamp|light|bulb)")
    sampler = TemplateSampler(make_pools(13)["train"], random.Random(0))
    texts = {sampler.sample(sent, {}, {}, "HassTurnOn")[0] for _ in range(5)}
    assert {t.split()[0] for t in texts} == {"turn", "switch", "put", "flip", "power"}


def test_extra_templates_train_only_with_the_package_slots(splits):
    extra = load_extra_templates()
    assert len({t.intent for t in extra}) == 42 and len(extra) >= 300
    package_slots = {s.slot for e in splits["test"] for s in e.slots}
    trained = [e for e in splits["train"] if e.template.startswith("extra:")]
    assert {e.intent for e in trained} == {t.intent for t in extra}
    assert {s.slot for e in trained for s in e.slots} <= package_slots
    for name in ("val", "test"):
        assert not [e for e in splits[name] if e.template.startswith("extra:")]
    # Validation and test stay the package's own sentences; only those that an extra
    # template makes ambiguous (two intents produce them) drop out.
    package_only = generate(seed=13, extra=False)
    for name in ("val", "test"):
        ours, theirs = {e.text for e in splits[name]}, {e.text for e in package_only[name]}
        assert ours <= theirs and len(theirs - ours) <= 0.01 * len(theirs)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('intents:\n  HassNope:\n    - "turn on {area}"\n', "unknown intent"),
        ('intents:\n  HassTurnOn:\n    - "turn on {area:room}"\n', "slot 'room'"),
        ('intents:\n  HassTurnOn:\n    - "turn on (the|{area}"\n', "HassTurnOn #1"),
        ('intents:\n  HassTurnOn:\n    - "turn on <nope> {area}"\n', "<nope>"),
    ],
)
def test_bad_extra_templates_are_named(tmp_path, body, problem):
    path = tmp_path / "templates.yaml"
    path.write_text(body)
    with pytest.raises(DataError, match=problem):
        load_extra_templates(path)


def test_more_training_areas_leave_validation_and_test_alone():
    base, more = make_pools(13), make_pools(13, more_train_areas=100)
    assert more["val"] == base["val"] and more["test"] == base["test"]
    assert set(base["train"].areas) < set(more["train"].areas)
    assert not set(more["train"].areas) & (set(base["test"].areas) | set(base["val"].areas))


def test_pools_stay_the_ones_the_default_model_was_trained_on():
    # The word lists live in export/words/*.yaml; composing them must not drift.
    pools = {name: asdict(p) for name, p in make_pools(13, more_train_areas=150).items()}
    digest = hashlib.sha256(json.dumps(pools).encode()).hexdigest()
    assert digest == "c924d348306c6717b8aa7538ad9e5d72b8228e73381e957451072510c2205566"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("chat:\n  - hello\n  - yes\n", "chat: expected a list of words"),
        ("rooms:\n  - den\n  - attic\n  - den\n", r"rooms: repeated \['den'\]"),
        ("rooms: den\n", "rooms: expected a list"),
        ("- den\n", "expected lists of words under names"),
    ],
)
def test_bad_word_lists_are_named(tmp_path, body, problem):
    (tmp_path / "w.yaml").write_text(body)
    with pytest.raises(WordListError, match=problem):
        load_words("w.yaml", tmp_path)


def test_english_sentences_stay_the_ones_the_default_model_was_trained_on(splits):
    # Generation is shared with other languages; the English splits and out-of-scope
    # sentences must not drift.
    from export.train import TrainConfig, negatives

    data = {k: [e.to_json() for e in v] for k, v in splits.items()}
    digest = hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()
    assert digest == "aded5c1bb6c2c6044627ca52ec172968c0c2685afe75582ed4a5d2409ffb1ed2"
    oos = negatives(splits, TrainConfig())
    digest = hashlib.sha256(json.dumps(oos).encode()).hexdigest()
    assert digest == "ecaf49c3cd35721b0a00f56ef69665958e00daea2208917632f436eb10efe50c"
