"""The G2P decoder's input feeding (training forward = the exported step, parity, the server
loads it) and resuming a stopped training run (small random models: fast)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.g2p.data import Entry, Vocab  # noqa: E402
from export.g2p.model import G2P, G2PConfig  # noqa: E402
from export.g2p.onnx_export import package  # noqa: E402
from export.g2p.train import TrainSettings, fit  # noqa: E402
from server.seq2seq import Seq2SeqRuntime  # noqa: E402

WORDS = ["lamp", "kit", "clip", "jane", "tall", "mower", "room", "light"]


def _entries() -> list[Entry]:
    return [Entry(w, (tuple(c.upper() for c in w),)) for w in WORDS]  # letters as "phonemes"


def _model(vocab: Vocab, feeding: bool, dropout: float = 0.0) -> G2P:
    torch.manual_seed(0)
    cfg = G2PConfig(len(vocab.chars), len(vocab.phonemes), 8, 6, 1, 10, dropout, "gru", feeding)
    return G2P(cfg)


@pytest.mark.parametrize("feeding", [False, True])
def test_the_teacher_forced_forward_equals_the_step_fed_its_own_state(feeding):
    vocab = Vocab.build(_entries())
    model = _model(vocab, feeding).eval()
    ids = torch.tensor([[3, 4, 5, 6, 7, 3, 4], [5, 6, 7, 3, 0, 0, 0], [4, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([7, 4, 1])
    dec_in = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 3, 4, 0], [1, 4, 0, 0, 0]])
    with torch.no_grad():
        whole = model(ids, lengths, dec_in)
        memory, h = model.encode(ids, lengths)
        steps = []
        for t in range(dec_in.size(1)):
            logits, h, _ = model.step(dec_in[:, t], h, memory, lengths)
            steps.append(logits)
    assert (whole - torch.stack(steps, dim=1)).abs().max().item() < 1e-5


def test_input_feeding_keeps_the_step_graphs_contract_and_passes_parity(tmp_path):
    vocab = Vocab.build(_entries())
    model = _model(vocab, True).eval()
    plain = _model(vocab, False)
    assert model.decoder.input_size == 8 + 10 and plain.decoder.input_size == 8
    ckpt = {"config": model.config.to_dict(), "metrics": {}, "training": {}}
    result = package(model, vocab, ckpt, tmp_path, "fed", "1")
    assert result["parity"]["passed"] and result["parity"]["max_abs_diff"] <= 1e-4
    rt = Seq2SeqRuntime(tmp_path / "fed" / "1")  # the server's own checks, state width as before
    assert rt.hidden == 10
    memory, h, _ = rt.encode([[3, 4, 5, 6], [7]])
    with torch.no_grad():
        t_mem, t_h = model.encode(torch.tensor([[3, 4, 5, 6]]), torch.tensor([4]))
        t_logits, _, _ = model.step(torch.tensor([1]), t_h, t_mem, torch.tensor([4]))
    assert np.abs(h[:, :1] - t_h.numpy()).max() < 1e-5
    assert np.abs(memory[:1, :4] - t_mem.numpy()).max() < 1e-5
    assert t_logits.shape == (1, len(vocab.phonemes))


def test_a_run_stopped_after_an_epoch_and_resumed_ends_as_the_run_that_never_stopped(tmp_path):
    entries = _entries()
    vocab = Vocab.build(entries)
    settings = TrainSettings(epochs=4, batch_size=3, lr=1e-2, average=2)
    whole = _model(vocab, True, 0.2)
    ref = fit(whole, vocab, entries, entries, settings, log=lambda _: None)

    class Stop(Exception):
        pass

    def stop_after_two(line: str) -> None:
        if line.startswith("epoch=2 "):
            raise Stop

    state = tmp_path / "run.state.pt"
    with pytest.raises(Stop):
        fit(
            _model(vocab, True, 0.2), vocab, entries, entries, settings, stop_after_two, None, state
        )
    assert torch.load(state, weights_only=False)["epoch"] == 2
    lines: list[str] = []
    resumed = _model(vocab, True, 0.2)
    out = fit(resumed, vocab, entries, entries, settings, lines.append, None, state)
    assert lines[0].startswith("resumed") and lines[1].startswith("epoch=3 ")
    assert [r["epoch"] for r in out["history"]] == [1, 2, 3, 4]
    assert out["best"] == ref["best"]
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    with pytest.raises(ValueError, match="other settings"):
        other = TrainSettings(epochs=5, batch_size=3, lr=1e-2, average=2)
        fit(_model(vocab, True), vocab, entries, entries, other, lambda _: None, None, state)


def test_a_model_without_input_feeding_widened_to_it_computes_the_same():
    from dataclasses import replace

    from export.g2p.train import with_input_feeding

    vocab = Vocab.build(_entries())
    plain = _model(vocab, False, 0.1).eval()
    fed = G2P(replace(plain.config, input_feeding=True)).eval()
    fed.load_state_dict(with_input_feeding(plain.state_dict()))
    ids, lengths = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2])
    dec_in = torch.tensor([[1, 5, 6], [1, 7, 0]])
    with torch.no_grad():
        assert (plain(ids, lengths, dec_in) - fed(ids, lengths, dec_in)).abs().max() < 1e-6
