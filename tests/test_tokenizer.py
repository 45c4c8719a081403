"""The tokenizer: spans, normalisation, ids, and its round trip through the metadata."""

import json

import pytest

from modelspec.names import NUM, PAD_ID, SPECIAL_TOKENS, UNK_ID
from modelspec.tokenizer import Tokenizer, TokenizerRules


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


def test_tokenizer_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, modelspec.tokenizer, modelspec.meta; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
