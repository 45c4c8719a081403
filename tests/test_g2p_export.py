"""The G2P model's data split, export and parity certificates (small random models: fast)."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from export.g2p.data import Entry, Vocab, split_entries, split_of  # noqa: E402
from export.g2p.model import G2P, G2PConfig  # noqa: E402
from export.g2p.onnx_export import package  # noqa: E402
from modelspec.seq2seq import (  # noqa: E402
    ENCODER_FILE,
    METADATA_KEY,
    STEP_FILE,
    Seq2SeqMetadata,
    Seq2SeqMetadataError,
)
from server.seq2seq import Seq2SeqRuntime  # noqa: E402


def test_the_split_is_the_md5_rule_and_keeps_a_words_pronunciations_together():
    for word in ["Clippy", "lamp", "kitchen", "zoltan", "a", "o'neill"]:
        bucket = int(hashlib.md5(word.lower().encode()).hexdigest(), 16) % 10
        assert split_of(word) == {0: "test", 1: "val"}.get(bucket, "train")
    entries = [Entry("read", (("R", "IY1", "D"), ("R", "EH1", "D"))), Entry("lamp", (("L",),))]
    splits = split_entries(entries)
    placed = [e for part in splits.values() for e in part]
    assert sorted(e.word for e in placed) == ["lamp", "read"]
    assert next(e for e in placed if e.word == "read").prons == entries[0].prons


def _tiny(tmp_path):
    entries = [Entry("lamp", (("L", "AE1", "M", "P"),)), Entry("kit", (("K", "IH1", "T"),))]
    vocab = Vocab.build(entries)
    torch.manual_seed(0)
    cfg = G2PConfig(len(vocab.chars), len(vocab.phonemes), 8, 6, 1, 10, 0.0)
    model = G2P(cfg).eval()
    ckpt = {"config": cfg.to_dict(), "metrics": {}, "training": {}}
    result = package(model, vocab, ckpt, tmp_path, "tiny", "3")
    return model, vocab, result


def test_export_writes_two_graphs_with_parity_and_metadata(tmp_path):
    model, vocab, result = _tiny(tmp_path)
    folder = tmp_path / "tiny" / "3"
    assert {p.name for p in folder.iterdir()} == {ENCODER_FILE, STEP_FILE}
    assert result["parity"]["passed"] and result["parity"]["max_abs_diff"] <= 1e-4
    for name, role in ((ENCODER_FILE, "encoder"), (STEP_FILE, "step")):
        sess = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        meta = Seq2SeqMetadata.from_json(sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
        assert meta.role == role and meta.target_vocab == list(vocab.phonemes)
        assert meta.hidden == 10 and meta.memory_size == 12
    rt = Seq2SeqRuntime(folder)  # the server loads it, checks included
    row = [2, 3, 4, 5, 2, 3, 4, 5, 2, 3, 4]
    memory, h, lengths = rt.encode([row, [3]])  # lengths the trace never saw
    with torch.no_grad():
        t_mem, t_h = model.encode(torch.tensor([row]), torch.tensor([11]))
    assert list(lengths) == [11, 1]
    assert np.abs(memory[:1] - t_mem.numpy()).max() < 1e-5
    assert np.abs(h[:, :1] - t_h.numpy()).max() < 1e-5
    assert np.abs(memory[1, 1:]).max() == 0.0  # zero past the row's length


def test_metadata_that_breaks_the_contract_is_refused():
    with pytest.raises(Seq2SeqMetadataError, match="lacks"):
        Seq2SeqMetadata.from_json('{"role": "step"}')
    good = Seq2SeqMetadata(
        "step",
        ["<pad>", "<unk>", "a"],
        ["<pad>", "<s>", "</s>", "AA1"],
        {},
        {"decoder_hidden": 4, "memory_size": 4, "bos_id": 1, "eos_id": 2},
        {},
    )
    assert Seq2SeqMetadata.from_json(good.to_json()) == good
    bad = good.to_json().replace('"<s>"', '"<go>"')
    with pytest.raises(Seq2SeqMetadataError, match="target vocabulary"):
        Seq2SeqMetadata.from_json(bad)


def test_averaged_weights_are_the_mean_of_float_tensors_and_the_last_of_the_others():
    from export.g2p.train import average_states

    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}
    out = average_states([a, b])
    assert out["w"].tolist() == [2.0, 4.0] and int(out["n"]) == 5
    out["w"] += 1  # a new tensor: the states averaged are left as they were
    assert a["w"].tolist() == [1.0, 2.0] and b["w"].tolist() == [3.0, 6.0]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
def test_training_runs_on_its_device_and_keeps_its_best_weights_on_the_cpu(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from export.g2p.train import TrainSettings, fit

    words = ["lamp", "kit", "clip", "jane", "tall", "mower", "room", "light"]
    entries = [Entry(w, (tuple(c.upper() for c in w),)) for w in words]  # letters as "phonemes"
    vocab = Vocab.build(entries)
    torch.manual_seed(0)
    model = G2P(G2PConfig(len(vocab.chars), len(vocab.phonemes), 16, 16, 1, 32, 0.0))
    kept: list[int] = []

    def on_best(state: dict, epoch: int) -> None:
        assert all(t.device.type == "cpu" for t in state.values())
        kept.append(epoch)

    settings = TrainSettings(epochs=3, batch_size=4, lr=1e-2, average=2, device=device)
    out = fit(model, vocab, entries, entries, settings, log=lambda _: None, on_best=on_best)
    assert [r["epoch"] for r in out["history"]] == [1, 2, 3]
    assert out["history"][-1]["loss"] < out["history"][0]["loss"]
    assert kept and all(p.device.type == "cpu" for p in model.parameters())
