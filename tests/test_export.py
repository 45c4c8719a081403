"""Export and parity for every cell type, exact padded batching, and the committed model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.model import IntentSlotRNN, ModelConfig
from export.onnx_export import check_graph, export_onnx, io_spec
from export.parity import ParityCase, ParityError, check_parity, default_cases
from modelspec.batch import pad_rows
from modelspec.io import IOSpec
from modelspec.meta import ModelMetadata
from modelspec.names import (
    C0,
    C_N,
    CONTEXT,
    H0,
    H_N,
    INPUT_IDS,
    INTENT_LOGITS,
    LENGTHS,
    METADATA_KEY,
    OUTPUTS,
    SLOT_LOGITS,
    output_names,
)

from .conftest import DEFAULT_CKPT, DEFAULT_ONNX

VARIANTS = [
    (cell, nl, bi, layers)
    for cell, nl in [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
    for bi in (False, True)
    for layers in (1, 2)
]


def small_model(cell: str, nl: str, bi: bool, layers: int, seed: int = 0) -> IntentSlotRNN:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=60,
        num_intents=5,
        num_slots=7,
        cell=cell,
        nonlinearity=nl,
        bidirectional=bi,
        num_layers=layers,
        embedding_dim=12,
        hidden_size=16,
    )
    return IntentSlotRNN(cfg).eval()


@pytest.mark.parametrize(
    ("cell", "nl", "bi", "layers"),
    VARIANTS,
    ids=[f"{c}-{n}-{'bi' if b else 'uni'}-{k}l" for c, n, b, k in VARIANTS],
)
def test_every_cell_type_exports_with_parity(tmp_path, cell, nl, bi, layers):
    model = small_model(cell, nl, bi, layers)
    path = tmp_path / "m.onnx"
    spec = export_onnx(model, path)
    proto = onnx.load(str(path))
    check_graph(proto, cell)
    assert [i.name for i in spec.inputs] == [INPUT_IDS, LENGTHS, H0] + (
        [C0] if cell == "lstm" else []
    )
    assert [o.name for o in spec.outputs] == output_names(cell)
    assert spec.inputs[0].shape == ("batch", "time") and spec.inputs[0].dtype == "int64"
    assert all(i.optional for i in spec.inputs[2:])
    rows = check_parity(model, path)
    cases = {r.case for r in rows}
    assert {"b1xT1", "b8xT64", "b33xT7", "b1xT512", "mixed33+state rows alone"} <= cases
    assert max(r.max_diff for r in rows) <= 1e-4


def test_padded_rows_equal_rows_alone_reverse_direction_included(tmp_path):
    model = small_model("lstm", "tanh", True, 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = output_names("lstm")

    def run(feeds):
        return dict(zip(names, sess.run(names, feeds)))

    ids, lengths = pad_rows([[5, 6, 7, 8, 9], [5, 6]])
    out = run({INPUT_IDS: ids, LENGTHS: lengths})
    alone = run({INPUT_IDS: ids[1:, :2], LENGTHS: lengths[1:]})
    np.testing.assert_allclose(out[INTENT_LOGITS][1], alone[INTENT_LOGITS][0], atol=1e-6)
    for state in (H_N, C_N):
        np.testing.assert_allclose(out[state][:, 1], alone[state][:, 0], atol=1e-6)
    np.testing.assert_allclose(out[OUTPUTS][1, :2], alone[OUTPUTS][0], atol=1e-6)
    assert not out[OUTPUTS][1, 2:].any(), "outputs past a row's length are zero"
    # Without the padding mask the reverse direction would start on pad tokens and differ.
    unmasked = run({INPUT_IDS: ids, LENGTHS: np.array([5, 5])})
    assert np.abs(unmasked[INTENT_LOGITS][1] - alone[INTENT_LOGITS][0]).max() > 1e-3


def test_state_input_is_optional_and_defaults_to_zeros(tmp_path):
    model = small_model("gru", "tanh", False, 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {INPUT_IDS: np.array([[3, 4, 5]] * 3, dtype=np.int64), LENGTHS: np.array([3, 2, 1])}
    implicit = sess.run(None, feeds)
    explicit = sess.run(None, feeds | {H0: np.zeros((2, 3, 16), np.float32)})
    for a, b in zip(implicit, explicit):
        np.testing.assert_array_equal(a, b)


def test_carried_state_continues_a_unidirectional_sequence(tmp_path):
    model = small_model("lstm", "tanh", False, 1)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = output_names("lstm")

    def run(feeds):
        return dict(zip(names, sess.run(names, feeds)))

    ids = np.array([[3, 9, 4, 22, 5, 7]], dtype=np.int64)
    whole = run({INPUT_IDS: ids, LENGTHS: np.array([6])})
    first = run({INPUT_IDS: ids[:, :4], LENGTHS: np.array([4])})
    second = run({INPUT_IDS: ids[:, 4:], LENGTHS: np.array([2]), H0: first[H_N], C0: first[C_N]})
    np.testing.assert_allclose(second[H_N], whole[H_N], atol=1e-6)
    np.testing.assert_allclose(second[INTENT_LOGITS], whole[INTENT_LOGITS], atol=1e-6)


def test_parity_error_names_the_output_and_difference(tmp_path):
    model = small_model("gru", "tanh", True, 1)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    with torch.no_grad():
        model.intent_head.bias += 0.01  # torch now differs from the exported graph
    with pytest.raises(ParityError) as err:
        check_parity(model, path, cases=[ParityCase("b2", (3, 2), False)])
    assert err.value.output == "intent_logits"
    assert 0.009 < err.value.max_diff < 0.011
    assert "intent_logits" in str(err.value)


def test_default_cases_cover_the_required_shapes():
    cases = default_cases()
    batches = {len(c.lengths) for c in cases}
    lengths = {n for c in cases for n in c.lengths}
    assert {1, 8, 33} <= batches and {1, 7, 64, 512} <= lengths
    assert any(c.with_state for c in cases) and any(not c.with_state for c in cases)
    assert any(len(set(c.lengths)) > 1 for c in cases)


def test_training_is_reproducible_from_the_seed(splits):
    from export.train import TrainConfig, forward_by_name, train

    intents = ("HassTurnOn", "HassTurnOff", "HassGetCurrentTime")
    small = {
        name: [e for e in splits[name] if e.intent in intents][:n]
        for name, n in (("train", 200), ("val", 60), ("test", 60))
    }
    arch = {"cell": "lstm", "hidden_size": 8, "embedding_dim": 4}
    cfg = TrainConfig(epochs=2, out_of_scope=50, min_count=1, progress=False)
    runs = [train(small, arch, cfg, log=lambda m: None) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history == runs[1].history and runs[0].metrics == runs[1].metrics
    ids, lengths = pad_rows([[4, 5, 6], [7]])
    out = forward_by_name(runs[0].model, torch.from_numpy(ids), torch.from_numpy(lengths))
    assert list(out) == output_names("lstm")
    assert out[SLOT_LOGITS].shape == (2, 3, len(runs[0].labels.tags))


def test_jsonl_data_trains_exports_and_keeps_its_labels(tmp_path, splits):
    from export.data import write_jsonl

    train = [
        e
        for e in splits["train"]
        if e.intent in ("HassTurnOn", "HassTurnOff", "HassGetCurrentTime")
    ][:300]
    write_jsonl(tmp_path / "train.jsonl", train)
    ckpt, onx = tmp_path / "m.pt", tmp_path / "m.onnx"
    base = [sys.executable, "-m", "export"]
    subprocess.run(
        base
        + [
            "train",
            "--train-file",
            str(tmp_path / "train.jsonl"),
            "--epochs",
            "2",
            "--hidden-size",
            "16",
            "--embedding-dim",
            "8",
            "--cell",
            "lstm",
            "--no-bidirectional",
            "--no-progress",
            "--context-share",
            "0.3",
            "--data-dir",
            str(tmp_path / "d"),
            "--out",
            str(ckpt),
            "--report",
            str(tmp_path / "r.json"),
        ],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        base + ["export", "--checkpoint", str(ckpt), "--out", str(onx)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "| mixed33+state rows alone |" in out.stdout
    meta = ModelMetadata.from_json(onnx.load(str(onx)).metadata_props[0].value)
    assert meta.intents == ["HassGetCurrentTime", "HassTurnOff", "HassTurnOn"]
    assert meta.config["cell"] == "lstm" and meta.parity["passed"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["data"]["data"] == "jsonl"
    assert report["data"]["train_config"]["context_share"] == 0.3


# ---------------------------------------------------------------- the committed default model


def _default_session():
    return ort.InferenceSession(str(DEFAULT_ONNX), providers=["CPUExecutionProvider"])


def test_default_model_carries_its_metadata():
    sess = _default_session()
    raw = sess.get_modelmeta().custom_metadata_map[METADATA_KEY]
    blob = json.loads(raw)
    for key in ("vocab", "tokenizer", "intents", "slots", "config", "metrics", "parity"):
        assert key in blob
    meta = ModelMetadata.from_json(raw)
    assert meta.parity["passed"] and meta.parity["max_abs_diff"] <= 1e-4
    assert meta.metrics["test"]["intent_accuracy"] >= 0.95
    assert meta.metrics["test"]["slot_f1"] >= 0.90
    assert len(meta.intents) >= 40
    assert [i.name for i in sess.get_inputs()] == [INPUT_IDS, LENGTHS]
    # h0 is an input with a zero default: onnxruntime lists it as an overridable initializer.
    assert [i.name for i in sess.get_overridable_initializers()] == [H0, CONTEXT]


def test_default_model_says_what_time_it_is():
    sess = _default_session()
    meta = ModelMetadata.from_json(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    tok = meta.make_tokenizer()
    texts = ["what time is it?", "turn on the kitchen lights", "what's the weather like"]
    want = ["HassGetCurrentTime", "HassTurnOn", "HassGetWeather"]
    for text, intent in zip(texts, want):
        ids = np.array([tok.ids(tok.tokenize(text))], dtype=np.int64)
        (logits,) = sess.run(["intent_logits"], {INPUT_IDS: ids, LENGTHS: np.array([ids.shape[1]])})
        assert meta.intents[int(logits.argmax())] == intent, text
    ids = np.array([tok.ids(tok.tokenize("turn on the kitchen lights"))], dtype=np.int64)
    (slots,) = sess.run(["slot_logits"], {INPUT_IDS: ids, LENGTHS: np.array([ids.shape[1]])})
    assert [meta.slots[i] for i in slots[0].argmax(-1)][3] == "B-area"


def test_default_model_matches_its_checkpoint():
    from export.train import load_checkpoint

    ckpt = load_checkpoint(DEFAULT_CKPT)
    cases = [ParityCase("b3-mixed", (9, 1, 30), False), ParityCase("b2+state", (4, 11), True)]
    rows = check_parity(ckpt.model, DEFAULT_ONNX, cases=cases)
    assert max(r.max_diff for r in rows) <= 1e-4
    assert io_spec(onnx.load(str(DEFAULT_ONNX))).inputs[0].shape == ("batch", "time")


def test_metadata_io_is_the_graphs_spec_with_lists_in_json():
    proto = onnx.load(str(DEFAULT_ONNX))
    written = json.loads(ModelMetadata.from_json(proto.metadata_props[0].value).to_json())["io"]
    spec = io_spec(proto)
    assert json.loads(json.dumps(spec.to_dict())) == written
    assert IOSpec.from_dict(written) == spec
    assert written["inputs"][0]["shape"] == ["batch", "time"] and written["opset"] == 17


def test_quantized_variant_agrees_with_float(tmp_path, splits):
    from export.quantize import compare, quantize

    q = tmp_path / "q.onnx"
    quantize(DEFAULT_ONNX, q)
    meta = ModelMetadata.from_json(
        _default_session().get_modelmeta().custom_metadata_map[METADATA_KEY]
    )
    cmp = compare(DEFAULT_ONNX, q, splits["test"][:300], meta)
    assert cmp["int8_bytes"] < cmp["float_bytes"]
    assert cmp["intent_agreement"] >= 0.9 and cmp["tag_agreement"] >= 0.9
