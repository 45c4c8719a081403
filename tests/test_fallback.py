"""The context-free fallback: rows without context features are answered by the plain network,
rows with them by the context network, each row as it would be alone; the shipped default
model carries the pair and answers without a context as its plain network does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.fallback import FallbackError, attach
from export.model import IntentSlotRNN, ModelConfig
from export.onnx_export import to_onnx
from export.train import forward_by_name, load_checkpoint
from modelspec.meta import ModelMetadata
from modelspec.names import CONTEXT, INPUT_IDS, INTENT_LOGITS, LENGTHS, METADATA_KEY, SLOT_LOGITS

from .conftest import DEFAULT_ONNX

SMALL = ModelConfig(vocab_size=30, num_intents=5, num_slots=7, hidden_size=16, embedding_dim=8)


def _pair(shift: float = 0.0) -> tuple[IntentSlotRNN, IntentSlotRNN, IntentSlotRNN]:
    torch.manual_seed(3)
    ctx = IntentSlotRNN(replace(SMALL, context_dim=6)).eval()
    plain = IntentSlotRNN(SMALL).eval()
    return ctx, plain, attach(ctx, plain, shift)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, 30, (4, 6), generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([6, 4, 3, 6])
    feats = torch.zeros(4, 6, 6)
    feats[1, 2, 0] = 1.0  # row 1: a match inside its length
    feats[2, 4, 3] = 1.0  # row 2: a feature past its length (padding): no context
    feats[3, 0, 1] = feats[3, 1, 2] = 1.0
    return ids, lengths, feats


def test_rows_without_features_get_the_plain_answer_and_the_others_the_context_networks():
    ctx, plain, both = _pair(shift=-0.5)
    ids, lengths, feats = _batch()
    with torch.no_grad():
        got = forward_by_name(both, ids, lengths, feats)
        p = forward_by_name(plain, ids, lengths)
        c = forward_by_name(ctx, ids, lengths, feats)
        alone = forward_by_name(both, ids, lengths)
    for name in (INTENT_LOGITS, SLOT_LOGITS):
        shift = -0.5 if name == INTENT_LOGITS else 0.0
        for row, own in ((0, False), (1, True), (2, False), (3, True)):
            want = (c[name][row] + shift) if own else p[name][row]
            assert torch.equal(got[name][row], want), (name, row)
        assert torch.equal(alone[name], p[name])  # no context at all: the plain network


def test_each_row_in_a_batch_answers_as_it_does_alone():
    _, _, both = _pair()
    ids, lengths, feats = _batch()
    with torch.no_grad():
        batch = forward_by_name(both, ids, lengths, feats)
        for r in range(4):
            n = int(lengths[r])
            row = (ids[r : r + 1, :n], lengths[r : r + 1], feats[r : r + 1, :n])
            one = forward_by_name(both, *row)
            assert torch.allclose(one[INTENT_LOGITS][0], batch[INTENT_LOGITS][r], atol=1e-6)
            assert torch.allclose(one[SLOT_LOGITS][0], batch[SLOT_LOGITS][r, :n], atol=1e-6)


def test_the_exported_pair_equals_torch_and_a_zero_context_equals_none():
    _, _, both = _pair(shift=0.25)
    sess = ort.InferenceSession(to_onnx(both).SerializeToString())
    assert not both.training  # the export leaves the model in eval mode
    ids, lengths, feats = _batch()
    feeds = {INPUT_IDS: ids.numpy(), LENGTHS: lengths.numpy()}
    with torch.no_grad():
        want = forward_by_name(both, ids, lengths, feats)[INTENT_LOGITS].numpy()
    got = sess.run([INTENT_LOGITS], feeds | {CONTEXT: feats.numpy()})[0]
    assert np.abs(got - want).max() < 1e-5
    none = sess.run([INTENT_LOGITS], feeds)[0]
    zeros = sess.run([INTENT_LOGITS], feeds | {CONTEXT: np.zeros_like(feats.numpy())})[0]
    assert np.array_equal(none, zeros)
    assert not np.allclose(none[1], got[1])  # the row with a match changed network
    # The graph runs one network for a batch that does not mix rows with and without a
    # context (If branches); each row alone equals the same row in the mixed batch.
    for r in range(4):
        n = int(lengths[r])
        one = {INPUT_IDS: ids[r : r + 1, :n].numpy(), LENGTHS: lengths[r : r + 1].numpy()}
        one[CONTEXT] = feats[r : r + 1, :n].numpy()
        assert np.array_equal(sess.run([INTENT_LOGITS], one)[0][0], got[r]), r
    ops = {n.op_type for n in to_onnx(both).graph.node}
    assert "If" in ops and "GRU" not in ops


def test_a_pair_needs_the_same_architecture_and_only_one_fallback():
    ctx, plain, both = _pair()
    with pytest.raises(FallbackError, match="architecture"):
        attach(ctx, IntentSlotRNN(replace(SMALL, hidden_size=8)))
    with pytest.raises(FallbackError, match="already"):
        attach(both, plain)
    with pytest.raises(ValueError, match="bidirectional"):
        replace(SMALL, context_dim=6, bidirectional=False, fallback=True)
    with pytest.raises(ValueError, match="bidirectional"):
        replace(SMALL, fallback=True)  # no context input


def test_the_default_model_answers_without_a_context_as_its_plain_network():
    meta = ModelMetadata.from_json(
        ort.InferenceSession(str(DEFAULT_ONNX)).get_modelmeta().custom_metadata_map[METADATA_KEY]
    )
    assert meta.config.get("fallback") is True
    ckpt = load_checkpoint(DEFAULT_ONNX.with_suffix(".pt"))
    assert ckpt.model.fallback is not None
    sess = ort.InferenceSession(str(DEFAULT_ONNX))
    rows = [ckpt.tokenizer.encode(t)[1] for t in ("turn on the bedroom lamp", "what time is it")]
    ids = np.zeros((2, max(map(len, rows))), dtype=np.int64)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = row
    lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
    got = sess.run([INTENT_LOGITS], {INPUT_IDS: ids, LENGTHS: lengths})[0]
    with torch.no_grad():
        tensors = (torch.from_numpy(ids), torch.from_numpy(lengths))
        want = forward_by_name(ckpt.model.fallback, *tensors)
    assert np.abs(got - want[INTENT_LOGITS].numpy()).max() < 1e-4
    # Without a context the pair scores exactly what its plain network scored alone.
    plain = torch.load(DEFAULT_ONNX.with_suffix(".pt"), weights_only=True)["training"]["fallback"]
    assert meta.metrics["test"] == plain["plain_network_metrics"]["test"]
    assert meta.metrics["test"] != plain["context_network_metrics"]["test"]


@pytest.mark.parametrize("plain_from", ["saved apart", "the shipped pair"])
def test_the_shipped_pair_is_rebuilt_from_its_two_networks(tmp_path, plain_from):
    """`python -m export.fallback` on the default model's two networks saved apart gives the
    shipped checkpoint back: the same weights, shift, calibration and figures; a paired
    checkpoint given as `--plain` gives its fallback network."""
    from export.fallback import main

    raw = torch.load(DEFAULT_ONNX.with_suffix(".pt"), weights_only=True)
    fb = raw["training"]["fallback"]
    state = raw["state_dict"]
    ctx = {**raw, "config": {**raw["config"], "fallback": False}}
    ctx["state_dict"] = {
        k: v for k, v in state.items() if not k.startswith("fallback.") and k != "context_shift"
    }
    ctx["metrics"] = fb["context_network_metrics"]
    ctx["training"] = {k: v for k, v in raw["training"].items() if k != "fallback"}
    plain = {**ctx, "config": {**raw["config"], "context_dim": 0, "fallback": False}}
    plain["state_dict"] = {
        k.removeprefix("fallback."): v for k, v in state.items() if k.startswith("fallback.")
    }
    plain["metrics"] = fb["plain_network_metrics"]
    torch.save(ctx, tmp_path / "intent.pt")
    torch.save(plain, tmp_path / "plain.pt")
    source = (
        tmp_path / "plain.pt" if plain_from == "saved apart" else DEFAULT_ONNX.with_suffix(".pt")
    )
    assert main(["--checkpoint", str(tmp_path / "intent.pt"), "--plain", str(source)]) == 0
    again = torch.load(tmp_path / "intent.pt", weights_only=True)
    if plain_from == "the shipped pair":
        assert again["training"]["fallback"] == fb
    assert again["config"] == raw["config"]
    assert again["state_dict"].keys() == state.keys()
    assert all(torch.equal(again["state_dict"][k], v) for k, v in state.items())
    assert again["metrics"]["calibration"] == raw["metrics"]["calibration"]
    assert again["metrics"]["test"] == raw["metrics"]["test"]
    # A paired checkpoint is refused as a context network, and left as it is on request.
    args = ["--checkpoint", str(tmp_path / "intent.pt"), "--plain", str(tmp_path / "plain.pt")]
    assert main(args) == 2
    before = (tmp_path / "intent.pt").read_bytes()
    assert main([*args, "--skip-unsupported"]) == 0
    assert (tmp_path / "intent.pt").read_bytes() == before


def test_the_server_answers_with_the_network_the_context_calls_for():
    """Through the service: a home that names nothing in the utterance is answered exactly as
    no home (the fallback network); one that names a word of it by the context network."""
    from client import Client

    from .serving import RunningServer, settings_for

    elsewhere = {"areas": [{"name": "Attic", "id": "attic"}]}
    here = {"entities": [{"name": "Zorblat Lamp", "id": "light.zorblat"}]}
    text = "turn on the zorblat lamp"
    with RunningServer(settings_for(DEFAULT_ONNX)) as srv, Client(srv.target) as c:
        none, other, named = (c.parse(text, top_k=3, context=h) for h in (None, elsewhere, here))
    assert other == none
    assert named.in_scope_score != none.in_scope_score
    assert [(s.name, s.entry_id) for s in named.slots] == [("name", "light.zorblat")]


def test_make_train_pairs_with_a_given_fallback_instead_of_training_one():
    """`make train FALLBACK=CHECKPOINT` (dry run): no plain network is trained, and the pair
    takes the given checkpoint; without FALLBACK one is trained and paired."""
    import shutil
    import subprocess

    from .conftest import ROOT

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")

    def steps(*args: str) -> list[str]:
        out = subprocess.run(
            [make, "-n", "--no-print-directory", "train", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return [line for line in out.stdout.splitlines() if "-m export" in line]

    given = steps("FALLBACK=build/shipped.pt")
    assert not any("--no-context" in s for s in given)
    assert any("-m export.fallback" in s and "--plain build/shipped.pt" in s for s in given)
    trained = steps()
    assert any("--no-context --out build/intent-plain.pt" in s for s in trained)
    assert any("--plain build/intent-plain.pt" in s for s in trained)
