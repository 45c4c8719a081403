"""Chinese (zh-CN): generated data with exact spans, the model file's contract, over the wire."""

from __future__ import annotations

import random
from pathlib import Path

import onnx
import pytest

from client import Client
from export.data import Example, Span, TemplateSampler, bio_tags, generate, load_templates
from export.languages import get_language
from export.pools_zh import DEVICE_NOUNS, TRAIN_ONLY_TIMERS, TRAIN_ONLY_TODO, odd_sentence
from modelspec.meta import ModelMetadata
from modelspec.names import SPECIAL_TOKENS
from modelspec.tokenizer import CJK_PATTERN, Tokenizer

from .conftest import ROOT
from .serving import RunningServer, settings_for

ZH_ONNX = ROOT / "models" / "intent-zh.onnx"
ZH_STREAM_ONNX = ROOT / "models" / "intent-zh-stream.onnx"
ZH = get_language("zh-CN")
TOK = Tokenizer(list(SPECIAL_TOKENS), ZH.tokenizer_rules)


@pytest.fixture(scope="module")
def zh_splits():
    """The generated zh-CN splits (seed 13)."""
    return generate(seed=13, language="zh-CN")


def test_sentences_parse_back_to_their_intent_and_exact_slot_spans():
    from hassil import Intents, recognize_all
    from hassil.intents import TextSlotList

    from export.data import package_intents, without_context

    raw = package_intents("zh-CN").raw
    assert raw["settings"]["ignore_whitespace"] is True
    grammar = Intents.from_dict(without_context(raw))
    assert grammar.settings.ignore_whitespace
    rng = random.Random(5)
    sampler = TemplateSampler(ZH.make_pools(13, 0)["train"], rng, "zh-CN")
    sentences = []
    for t in rng.sample(load_templates("zh-CN"), 70):
        text, spans = sampler.sample(t.sentence, t.rules, t.lists, t.intent, t.domains)
        if not odd_sentence(text, spans):
            sentences.append((t.intent, text, spans))
    assert len(sentences) >= 55
    values = {
        k: sorted(
            {text[s.start : s.end] for _, text, spans in sentences for s in spans if s.slot == k}
        )
        or ["无"]
        for k in ("name", "area", "floor")
    }
    lists = {k: TextSlotList.from_strings(v) for k, v in values.items()}
    for intent, text, spans in sentences:
        assert text == "".join(text.split())  # hassil matches Chinese without whitespace
        want = sorted((s.slot, text[s.start : s.end]) for s in spans)
        found = []
        for result in recognize_all(text, grammar, slot_lists=lists):
            # Spans never end in the particle 的 (the lists hold "开着[的]").
            got = sorted(
                (k, e.text.strip().removesuffix("的") or e.text.strip())
                for k, e in result.entities.items()
                if k in dict(want)
            )
            found.append((result.intent.name, got))
            if (result.intent.name, got) == (intent, want):
                break
        else:
            pytest.fail(f"{text!r}: hassil reads {found}, generated {intent} {want}")
        tokens, tags = bio_tags(Example(text, intent, spans), TOK)
        assert len([t for t in tags if t.startswith("B-")]) == len(spans), (tokens, tags)


def test_splits_train_every_intent_and_hold_out_templates_and_names(zh_splits):
    train, test = zh_splits["train"], zh_splits["test"]
    templates = load_templates("zh-CN")
    assert len({t.intent for t in templates}) == 40
    assert {e.intent for e in train} == {t.intent for t in templates}
    assert any(e.intent == "HassGetCurrentTime" and "几点" in e.text for e in train)
    trained = {e.template for e in train}
    held = [e for e in test if e.kind == "template"]
    assert len(held) > 100 and not {e.template for e in held} & trained

    def values(exs, slot):
        return {e.text[s.start : s.end] for e in exs for s in e.slots if s.slot == slot}

    names = [e for e in test if e.kind == "values"]
    for slot in ("name", "area", "floor"):
        assert values(names, slot) and not values(names, slot) & values(train, slot)
    assert not {e.text for e in test} & {e.text for e in train}
    assert not [e for e in train for sp in e.slots if e.text[sp.start : sp.end].endswith("的")]
    # "停止…计时器" is both HassCancelTimer and HassPauseTimer in the package: hassil (and so
    # Home Assistant) takes HassCancelTimer, and so does the data.
    pairs = ("HassCancelTimer", "HassPauseTimer")
    timers = [e for s in zh_splits.values() for e in s if e.intent in pairs and "停止" in e.text]
    assert timers and {e.intent for e in timers} == {"HassCancelTimer"}
    paused = [e for e in train if e.template.startswith("HassPauseTimer/")]
    assert {e.intent for e in paused} == set(pairs)  # "暂停…" stays HassPauseTimer
    # Only package templates that need no device domain are relabelled, and few of them.
    relabelled = [e for e in train if e.template.split("/")[0] != e.intent]
    domains = {t.id: t.domains for t in templates}
    extra = [e for e in relabelled if e.template.startswith("extra:")]
    assert all(e.template.removeprefix("extra:").split("/")[0] == e.intent for e in extra)
    package = [e for e in relabelled if not e.template.startswith("extra:")]
    assert len(package) < 0.03 * len(train) and not any(domains[e.template] for e in package)
    for ex in train[:2000] + test[:1000]:
        assert not any(ch.isspace() for ch in ex.text)
        bio_tags(ex, TOK)  # spans on token boundaries


def test_odd_template_outputs_are_recognised():
    assert odd_sentence("打开一楼楼的灯", (Span("floor", 2, 4),))
    assert odd_sentence("打开吸顶灯的灯", (Span("name", 2, 5),))
    assert odd_sentence("把灯调到百分之50%", ())
    assert not odd_sentence("打开客厅的灯", (Span("area", 2, 4),))
    assert not odd_sentence("把一楼的灯关掉", (Span("floor", 1, 3),))
    # 两 counts things ("两分钟"); a bare number is 二 ("百分之二", "音量调到二").
    assert odd_sentence("把窗帘开到百分之两", (Span("position", 8, 9),))
    assert odd_sentence("音量调到两", (Span("volume_level", 4, 5),))
    assert not odd_sentence("定一个两分钟的计时器", (Span("minutes", 3, 4),))
    assert not odd_sentence("音量调到二", (Span("volume_level", 4, 5),))


def test_numbers_are_said_with_liang_too():
    sampler = TemplateSampler(ZH.make_pools(13, 0)["train"], random.Random(3), "zh-CN")
    words = {sampler._number(2) for _ in range(200)}
    assert {"两", "二", "2"} <= words
    assert {sampler._number(22) for _ in range(200)} <= {"二十二", "22"}


def test_training_only_values_stay_out_of_validation_and_test():
    pools = ZH.make_pools(13, 0)
    for key, more in (("timer_name", TRAIN_ONLY_TIMERS), ("todo_list_item", TRAIN_ONLY_TODO)):
        train = set(pools["train"].wildcards[key])
        held = set(pools["val"].wildcards[key]) | set(pools["test"].wildcards[key])
        assert held and not train & held
        assert set(more) - held <= train


def test_locks_lock_with_guan_shang_and_unlock_with_da_kai(zh_splits):
    """As in the package's lock templates: 关上 a lock is HassTurnOn, 打开 it HassTurnOff;
    other devices turn on with 打开 and covers close with 关上."""
    locks = tuple(DEVICE_NOUNS["lock"])
    lock_rows = [e for e in zh_splits["train"] if e.intent in ("HassTurnOn", "HassTurnOff")]
    said = {("lock" if any(n in e.text for n in locks) else "other", e.intent) for e in lock_rows}
    for verb, lock_intent, other_intent in (
        ("打开", "HassTurnOff", "HassTurnOn"),
        ("关上", "HassTurnOn", "HassTurnOff"),
    ):
        rows = [e for e in lock_rows if verb in e.text and "解锁" not in e.text]
        by_lock = {e.intent for e in rows if any(n in e.text for n in locks)}
        by_other = {e.intent for e in rows if not any(n in e.text for n in locks)}
        assert by_lock == {lock_intent}, verb
        assert by_other == {other_intent}, verb
    assert ("lock", "HassTurnOn") in said and ("lock", "HassTurnOff") in said


def _meta(path: Path = ZH_ONNX) -> ModelMetadata:
    return ModelMetadata.from_json(onnx.load(str(path)).metadata_props[0].value)


def test_model_file_carries_cjk_rules_parity_and_calibration():
    meta = _meta()
    assert meta.tokenizer["pattern"] == CJK_PATTERN and meta.tokenizer["version"] == 2
    assert meta.training["language"] == "zh-CN"
    assert meta.parity["passed"] and meta.parity["max_abs_diff"] < meta.parity["tolerance"]
    assert 0.0 < meta.calibration["threshold"] < 1.0
    assert len(meta.intents) == 40 and meta.config["cell"] == "gru"
    tokens = [t.text for t in meta.make_tokenizer().tokenize("把客厅空调调到26度")]
    assert tokens == ["把", "客", "厅", "空", "调", "调", "到", "26", "度"]


def test_a_real_server_parses_chinese():
    with (
        RunningServer(settings_for(Path(ZH_ONNX))) as srv,
        Client(srv.target, timeout=10) as client,
    ):
        time = client.parse("现在几点了？")
        light = client.parse("打开客厅的灯")
        numbers = [
            client.parse(t)
            for t in (
                "把客厅灯的亮度调到五十",
                "设置一个二十五分钟的计时器",
                "把卧室空调温度调到二十一点五度",
            )
        ]
        fans = client.parse("有多少风扇是关着的")
        louder, told = client.parse("音量调高"), client.parse("把音量调高百分之十")
    assert time.intent.name == "HassGetCurrentTime" and not time.no_intent
    assert light.intent.name == "HassTurnOn" and not light.no_intent
    (area,) = [s for s in light.slots if s.name == "area"]
    assert (area.value, area.char_start, area.char_end) == ("客厅", 2, 4)
    # Chinese numerals answer as numbers, with the words as said
    said = [(s.name, s.value, s.canonical) for r in numbers for s in r.slots if s.name != "name"]
    assert said == [
        ("brightness", "五十", "50"),
        ("minutes", "二十五", "25"),
        ("temperature", "二十一点五", "21.5"),
    ]
    # "关着" of a fan is "off" (a cover's would be "closed"): the state does not decide the domain
    assert [(s.name, s.value, s.canonical) for s in fans.slots] == [("state", "关着", "off")]
    assert [(i.name, i.value) for i in fans.implied_slots] == [("domain", "fan")]
    # the template fixes volume_step "up" with no word for it; a said value is a slot instead
    assert louder.intent.name == told.intent.name == "HassSetVolumeRelative"
    assert [(i.name, i.value) for i in louder.implied_slots] == [("volume_step", "up")]
    assert [(s.name, s.canonical) for s in told.slots] == [("volume_step", "10")]
    assert not told.implied_slots


def test_a_state_found_in_the_lists_keeps_the_words_as_said():
    from modelspec.values import SlotValues
    from server.decoding import ParseResult, TokenOut
    from server.slot_values import finish

    text = "开关开了吗"
    tokens = [TokenOut(ch, 0, i, i + 1) for i, ch in enumerate(text)]
    values = SlotValues(
        text={"state": {"开 了": [["", "on"], ["cover", "open"]]}},
        intent_slots={"HassGetState": ["state"]},
    )
    result = ParseResult("m", tokens, ("HassGetState", 1.0), [], [], ["O"] * 5)
    finish(result, values, None, tokens, "HassGetState", ["O"] * 5, text)
    assert [(s.name, s.value, s.char_start, s.char_end, s.canonical) for s in result.slots] == [
        ("state", "开了", 2, 4, "on")
    ]


def test_the_chinese_streaming_model_reads_chunk_by_chunk_as_in_one_go():
    meta = _meta(ZH_STREAM_ONNX)
    assert meta.config["bidirectional"] is False and meta.training["language"] == "zh-CN"
    assert meta.parity["passed"] and meta.tokenizer["pattern"] == CJK_PATTERN
    chunks = ["把客厅", "的灯", "打开"]
    settings = settings_for(ZH_ONNX, model_repository=str(ROOT / "models"))
    with RunningServer(settings) as srv, Client(srv.target, timeout=10) as c:
        answers = list(c.stream(chunks, model="intent-zh-stream"))
        whole = c.parse("".join(chunks), model="intent-zh-stream")
    assert [a.model for a in answers] == ["intent-zh-stream"] * 3
    assert [a.total_steps for a in answers] == [3, 5, 7]
    tokens = [(t.text, t.char_start, t.char_end) for a in answers for t in a.tokens]
    assert tokens == [(ch, i, i + 1) for i, ch in enumerate("把客厅的灯打开")]
    assert answers[-1].intent.name == whole.intent.name == "HassTurnOn"
    assert answers[-1].intent.confidence == pytest.approx(whole.intent.confidence, abs=1e-5)

    def spans(slots):
        return [(s.name, s.value, s.char_start, s.char_end) for s in slots]

    assert spans(answers[-1].slots) == spans(whole.slots) and whole.slots
