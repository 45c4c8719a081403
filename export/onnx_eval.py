"""Evaluate an exported ONNX model on labelled examples with onnxruntime (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from export.data import Example, bio_tags
from export.metrics import evaluate
from modelspec.batch import pad_rows
from modelspec.meta import ModelMetadata
from modelspec.names import INPUT_IDS, INTENT_LOGITS, LENGTHS, METADATA_KEY, SLOT_LOGITS
from modelspec.tags import allowed_transitions, best_tags, log_softmax


def read_metadata(sess: ort.InferenceSession) -> ModelMetadata:
    """The rnnserve metadata of a loaded session."""
    return ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])


def predict_onnx(
    path: str | Path,
    examples: Sequence[Example],
    batch_size: int = 64,
    meta: ModelMetadata | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Predicted intent names and BIO tags for each example."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    meta = meta or read_metadata(sess)
    tok = meta.make_tokenizer()
    start, trans = allowed_transitions(meta.slots)
    encoded = [tok.ids(tok.tokenize(e.text)) for e in examples]
    intents: list[str] = [""] * len(examples)
    tags: list[list[str]] = [[] for _ in examples]
    order = sorted(range(len(examples)), key=lambda i: len(encoded[i]))
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        ids, lengths = pad_rows([encoded[i] for i in idx])
        il, sl = sess.run([INTENT_LOGITS, SLOT_LOGITS], {INPUT_IDS: ids, LENGTHS: lengths})
        for r, i in enumerate(idx):
            intents[i] = meta.intents[int(il[r].argmax())]
            logp = log_softmax(sl[r, : lengths[r]])
            tags[i] = [meta.slots[int(t)] for t in best_tags(logp, start, trans)]
    return intents, tags


def evaluate_onnx(
    path: str | Path, examples: Sequence[Example], meta: ModelMetadata | None = None
) -> tuple[dict[str, Any], list[str], list[list[str]]]:
    """Metrics of the ONNX model on examples, plus its predictions."""
    pi, pt = predict_onnx(path, examples, meta=meta)
    tok = (meta or _meta_of(path)).make_tokenizer()
    gold_tags = [bio_tags(e, tok)[1] for e in examples]
    return (
        evaluate([e.intent for e in examples], pi, gold_tags, pt, [e.kind for e in examples]),
        pi,
        pt,
    )


def _meta_of(path: str | Path) -> ModelMetadata:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return read_metadata(sess)
