"""The tokenizer: spans, normalisation, ids, and its round trip through the metadata."""

import json

import pytest

from modelspec.meta import ModelMetadata
from modelspec.names import NUM, PAD_ID, SPECIAL_TOKENS, UNK_ID
from modelspec.tokenizer import (
    CJK_PATTERN,
    V1_PATTERN,
    Token,
    Tokenizer,
    TokenizerRules,
    expand_pattern,
)

from .conftest import DEFAULT_ONNX

V1_RULES = TokenizerRules(pattern=V1_PATTERN, version=1)


def _spans(tok: Tokenizer, text: str) -> list[tuple[str, int, int]]:
    return [(t.text, t.start, t.end) for t in tok.tokenize(text)]


def test_tokens_carry_spans_into_the_original_text():
    tok = Tokenizer(list(SPECIAL_TOKENS))
    text = "  What's the TEMP in Kid's Room?  Set it to 21.5°!"
    toks = tok.tokenize(text)
    assert [t.text for t in toks] == [
        "what's",
        "the",
        "temp",
        "in",
        "kid's",
        "room",
        "set",
        "it",
        "to",
        "21.5",
        "°",
    ]
    for t in toks:
        assert text[t.start : t.end].lower() == t.text


def test_typographic_apostrophe_and_hyphen():
    tok = Tokenizer(list(SPECIAL_TOKENS))
    assert [t.text for t in tok.tokenize("What’s on the living-room TV")] == [
        "what's",
        "on",
        "the",
        "living",
        "room",
        "tv",
    ]


def test_numbers_share_one_id_and_unknown_words_map_to_unk():
    tok = Tokenizer.build(["set the lamp to 50 %", "what time is it"])
    ids = tok.ids(tok.tokenize("set the lamp to 75 % zebra"))
    assert ids[4] == tok.index[NUM] == tok.ids(["1/2"])[0]
    assert ids[-1] == UNK_ID
    assert tok.index["%"] == ids[5]
    assert PAD_ID not in ids


def test_rules_and_vocab_round_trip_through_json():
    tok = Tokenizer.build(["turn on the kitchen lights", "what time is it"])
    blob = json.loads(json.dumps(tok.to_dict()))
    again = Tokenizer(blob["vocab"], TokenizerRules.from_dict(blob["rules"]))
    text = "Turn ON the kitchen lights, what time is it?"
    assert again.encode(text) == tok.encode(text)


def test_vocab_must_start_with_special_tokens_and_version_must_match():
    with pytest.raises(ValueError, match="must start"):
        Tokenizer(["hello", "<pad>", "<unk>", "<num>"])
    rules = TokenizerRules().to_dict() | {"version": 99}
    with pytest.raises(ValueError, match="unsupported tokenizer version"):
        TokenizerRules.from_dict(rules)
    with pytest.raises(ValueError, match="unsupported tokenizer version"):
        TokenizerRules(version=3)


def test_tokenizer_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, modelspec.tokenizer, modelspec.meta; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- signs and combining marks


def test_a_minus_before_a_number_is_its_sign_and_the_number_stays_one_token():
    tok = Tokenizer.build(["set the freezer to 5 degrees"])
    for minus in ("-", "\u2212"):
        text = f"set the freezer to {minus}18 degrees"
        toks = tok.tokenize(text)
        assert toks[4] == Token(f"{minus}18", 19, 22)
        assert text[toks[4].start : toks[4].end] == f"{minus}18"
        assert tok.ids(toks)[4] == tok.index[NUM]
    assert tok.ids(["-2.5", "\u22121/2", "-", "-x"]) == [tok.index[NUM]] * 2 + [UNK_ID] * 2
    assert _spans(tok, "(-5) and --3") == [("-5", 1, 3), ("and", 5, 8), ("-3", 10, 12)]


def test_a_minus_after_a_letter_or_digit_is_not_a_sign():
    tok = Tokenizer(list(SPECIAL_TOKENS))
    assert _spans(tok, "10-15 degrees") == [("10", 0, 2), ("15", 3, 5), ("degrees", 6, 13)]
    assert _spans(tok, "room-2 x\u22123") == [
        ("room", 0, 4),
        ("2", 5, 6),
        ("x", 7, 8),
        ("3", 9, 10),
    ]
    assert _spans(tok, "- 18") == [("18", 2, 4)]


def test_combining_marks_stay_inside_their_word():
    tok = Tokenizer.build(["turn on the lights in the caf\u00e9"])
    text = "lights in the CAFE\u0301 now"
    toks = tok.tokenize(text)
    assert toks[3] == Token("caf\u00e9", 14, 19)  # NFC text, the span covers the mark
    assert text[toks[3].start : toks[3].end] == "CAFE\u0301"
    assert toks[4] == Token("now", 20, 23)
    assert tok.ids(toks)[3] == tok.index["caf\u00e9"] != UNK_ID
    assert _spans(tok, "re\u0301sume\u0301's") == [("r\u00e9sum\u00e9's", 0, 10)]
    # Scripts whose vowel signs are marks keep their words whole.
    assert [
        t.text
        for t in tok.tokenize(
            "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e"
        )
    ] == [
        "\u0928\u092e\u0938\u094d\u0924\u0947",
        "\u0926\u0941\u0928\u093f\u092f\u093e",
    ]


def test_combining_marks_can_be_named_inside_and_outside_a_character_class():
    assert expand_pattern("[a-z]+") == "[a-z]+"
    for pattern, want in [
        (r"a\p{M}+", ["a\u0301\u0308"]),
        (r"[a\p{M}]+", ["a\u0301\u0308a"]),
        (r"[^\p{M}\s]+", ["a", "a", "]p", "\\p"]),
        (r"[]\p{M}]+", ["\u0301\u0308", "]"]),
        (r"\\p", ["\\p"]),
    ]:
        rx = TokenizerRules(pattern=pattern).regex()
        assert rx.findall("a\u0301\u0308a ]p \\p") == want, pattern


def test_version_1_rules_are_read_with_their_old_meaning():
    old = TokenizerRules.from_dict(V1_RULES.to_dict())
    assert old == V1_RULES
    tok = Tokenizer(list(SPECIAL_TOKENS), old)
    assert _spans(tok, "to -18 at cafe\u0301") == [
        ("to", 0, 2),
        ("18", 4, 6),
        ("at", 7, 9),
        ("cafe", 10, 14),
    ]
    assert tok.ids(["-18"]) == [UNK_ID]
    with pytest.raises(Exception, match="bad escape"):  # \p{M} means nothing in version 1
        TokenizerRules(pattern=r"a\p{M}", version=1).regex()


def test_english_training_and_evaluation_sentences_tokenize_as_under_version_1(splits):
    from export.quality import load_out_of_scope, load_paraphrases

    vocab = ModelMetadata.from_json(_default_metadata()).vocab
    old, new = Tokenizer(vocab, V1_RULES), Tokenizer(vocab)
    texts = [e.text for exs in splits.values() for e in exs]
    texts += [e.text for e in load_paraphrases()] + load_out_of_scope()
    assert len(texts) > 20_000 and any(not t.isascii() for t in texts)
    assert [t for t in texts if old.encode(t) != new.encode(t)] == []


def _default_metadata() -> str:
    import onnx

    from modelspec.names import METADATA_KEY

    props = {p.key: p.value for p in onnx.load(str(DEFAULT_ONNX)).metadata_props}
    return props[METADATA_KEY]


def test_the_default_model_carries_version_2_rules():
    meta = ModelMetadata.from_json(_default_metadata())
    assert meta.tokenizer == TokenizerRules().to_dict()
    tok = meta.make_tokenizer()
    assert tok.ids(tok.tokenize("-18 cafe\u0301")) == tok.ids(tok.tokenize("18 caf\u00e9"))


# ---------------------------------------------------------------- Chinese (CJK_PATTERN)

CJK = TokenizerRules(pattern=CJK_PATTERN)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("把客厅的灯打开", [(ch, i, i + 1) for i, ch in enumerate("把客厅的灯打开")]),
        ("现在几点了？", [("现", 0, 1), ("在", 1, 2), ("几", 2, 3), ("点", 3, 4), ("了", 4, 5)]),
        ("打开3号灯", [("打", 0, 1), ("开", 1, 2), ("3", 2, 3), ("号", 3, 4), ("灯", 4, 5)]),
        ("打开 TV 电源", [("打", 0, 1), ("开", 1, 2), ("tv", 3, 5), ("电", 6, 7), ("源", 7, 8)]),
        (
            "打开TV2电源",
            [("打", 0, 1), ("开", 1, 2), ("tv", 2, 4), ("2", 4, 5), ("电", 5, 6), ("源", 6, 7)],
        ),
        (
            "把温度调到-18度",
            [*((c, i, i + 1) for i, c in enumerate("把温度调到")), ("-18", 5, 8), ("度", 8, 9)],
        ),
        ("亮度３０％", [("亮", 0, 1), ("度", 1, 2), ("30", 2, 4), ("%", 4, 5)]),
    ],
)
def test_cjk_rules_make_each_han_character_a_token(text, want):
    tok = Tokenizer(list(SPECIAL_TOKENS), CJK)
    got = tok.tokenize(text)
    assert [(t.text, t.start, t.end) for t in got] == want
    for t in got:
        assert tok.normalise(text[t.start : t.end]) == t.text


def test_cjk_rules_travel_in_the_metadata_and_need_no_code_per_language():
    tok = Tokenizer.build(["把客厅的灯打开", "打开3号灯", "现在几点了？"], rules=CJK)
    blob = json.loads(json.dumps(tok.to_dict()))
    assert blob["rules"]["pattern"] == CJK_PATTERN
    again = Tokenizer(blob["vocab"], TokenizerRules.from_dict(blob["rules"]))
    ids = again.ids(again.tokenize("打开5号灯"))
    assert ids == tok.ids(tok.tokenize("打开3号灯"))
    assert ids[2] == again.index[NUM] and UNK_ID not in ids
    assert again.encode("打开卧室的灯")[1][2:4] == [UNK_ID, UNK_ID]
