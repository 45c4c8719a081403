"""Slot tags through the service: the best path that obeys BIO, computed like the evaluation."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from client import Client
from modelspec.meta import ModelMetadata
from modelspec.tags import allowed_transitions, best_tags, decode_bio

from .serving import RunningServer, settings_for, small_model_file

TEXTS = [
    "turn on the kitchen lights",
    "what time is it in the garage",
    "set the fan to 50 percent",
    "turn off the bedroom lamp what is the temperature",
    "kitchen kitchen lights lamp garage fan bedroom",
    "the the the lights",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return small_model_file(tmp_path_factory.mktemp("m") / "gru.onnx", "gru", seed=3)


def _valid(tags: list[str]) -> bool:
    prev = "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        prev = t
    return True


def test_served_tags_are_the_best_valid_path(model):
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map["rnnserve"])
    tok = meta.make_tokenizer()
    start, trans = allowed_transitions(meta.slots)
    repaired = 0
    with RunningServer(settings_for(model)) as srv, Client(srv.target) as c:
        for text in TEXTS:
            r = c.parse(text, steps=True)
            ids = np.array([tok.ids(tok.tokenize(text))], dtype=np.int64)
            logits = sess.run(["slot_logits"], {"input_ids": ids, "lengths": [ids.shape[1]]})[0][0]
            logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
            want = [meta.slots[i] for i in best_tags(logp, start, trans)]
            assert list(r.steps.tags) == want
            assert _valid(list(r.steps.tags))
            assert [(s.name, s.token_start, s.token_end) for s in r.slots] == [
                (e.slot, e.start, e.end) for e in decode_bio(want)
            ]
            repaired += want != [meta.slots[i] for i in logits.argmax(-1)]
    assert repaired > 0  # this random model's argmax breaks BIO somewhere: the repair ran


def test_streamed_chunks_continue_the_previous_tag(model):
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map["rnnserve"])
    start, trans = allowed_transitions(meta.slots)
    continued = 0
    with RunningServer(settings_for(model)) as srv, Client(srv.target) as c:
        for text in TEXTS:
            words = text.split()
            chunks = [" ".join(words[i : i + 2]) + " " for i in range(0, len(words), 2)]
            answers = list(c.stream(chunks, steps=True))
            tags = [t for a in answers for t in a.steps.tags]
            assert len(tags) == len(words) and _valid(tags)
            prev = None
            for a in answers:
                scores = np.asarray(a.steps.slot_scores.values, dtype=np.float64)
                logp = np.log(scores.reshape(list(a.steps.slot_scores.shape)))
                first = start if prev is None else trans[meta.slots.index(prev)]
                want = [meta.slots[i] for i in best_tags(logp, first, trans)]
                assert list(a.steps.tags) == want  # decoded from the previous chunk's last tag
                fresh = [meta.slots[i] for i in best_tags(logp, start, trans)]
                continued += want != fresh
                prev = a.steps.tags[-1]
    assert continued > 0  # some chunk decodes differently because of the tag before it
