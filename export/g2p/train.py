"""Training of the G2P encoder–decoder: teacher forcing, label smoothing, Adam, best-on-val."""

from __future__ import annotations

import copy
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.g2p.data import Entry, Vocab, load_cmudict, split_entries
from export.g2p.decode import decode_entries, error_rates
from export.g2p.model import G2P, G2PConfig
from modelspec.batch import pad_rows
from modelspec.seq2seq import BOS_ID, TGT_PAD_ID


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (stored in the checkpoint)."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 3e-3
    min_lr: float = 1e-4
    label_smoothing: float = 0.1
    clip: float = 1.0
    seed: int = 0
    val_every: int = 1
    val_words: int = 3000  # words of the validation split scored after each epoch
    average: int = 1  # > 1: also score the mean weights of the last `average` epochs
    device: str = "cpu"  # where the batches run ("cuda" on a GPU); validation decodes on CPU


def _pairs(vocab: Vocab, entries: Sequence[Entry]) -> list[tuple[list[int], list[int]]]:
    """(character ids, phoneme ids + </s>) for every pronunciation of every entry."""
    return [(vocab.encode_word(e.word), vocab.encode_pron(p)) for e in entries for p in e.prons]


def _batches(
    pairs: list[tuple[list[int], list[int]]], size: int, rng: random.Random
) -> list[list[tuple[list[int], list[int]]]]:
    """Shuffled batches of similar source length (sorted within pools of 50 batches)."""
    order = pairs[:]
    rng.shuffle(order)
    pool = size * 50
    out: list[list[tuple[list[int], list[int]]]] = []
    for s in range(0, len(order), pool):
        chunk = sorted(order[s : s + pool], key=lambda p: len(p[0]))
        out.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(out)
    return out


def _tensors(batch: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, ...]:
    src, src_len = pad_rows([p[0] for p in batch])
    tgt, _ = pad_rows([p[1] for p in batch], pad_id=TGT_PAD_ID)
    tgt_t = torch.from_numpy(tgt)
    dec_in = torch.cat([torch.full((len(batch), 1), BOS_ID), tgt_t[:, :-1]], dim=1)
    dec_in = dec_in.masked_fill(dec_in == TGT_PAD_ID, TGT_PAD_ID)
    return torch.from_numpy(src), torch.from_numpy(src_len), dec_in, tgt_t


def average_states(states: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one architecture (non-float tensors: the last)."""
    states = list(states)
    out = {}
    for k, last in states[-1].items():
        if last.is_floating_point():
            out[k] = torch.stack([s[k] for s in states]).mean(0)
        else:
            out[k] = last.clone()
    return out


def fit(
    model: G2P,
    vocab: Vocab,
    train: Sequence[Entry],
    val: Sequence[Entry],
    settings: TrainSettings,
    log: Callable[[str], None] = print,
    on_best: Callable[[dict[str, Any], int], None] | None = None,
    resume: Path | None = None,
) -> dict[str, Any]:
    """Train; keep the weights of the epoch with the lowest validation word error (handed to
    `on_best` as they improve, so a stopped run leaves its best weights). With `resume`, the
    whole training state is written there after every epoch and, when the file exists at the
    start, the run continues from it (same settings) as if it had never stopped."""
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    device = torch.device(settings.device)
    model.to(device)
    pairs = _pairs(vocab, train)
    val_sample = list(val)
    random.Random(settings.seed).shuffle(val_sample)
    val_sample = val_sample[: settings.val_words]
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    steps_per_epoch = math.ceil(len(pairs) / settings.batch_size)
    total = settings.epochs * steps_per_epoch

    def lr_at(step: int) -> float:  # linear warm-up over 300 steps, then cosine to min_lr
        if step < 300:
            return settings.lr * (step + 1) / 300
        frac = (step - 300) / max(1, total - 300)
        return settings.min_lr + 0.5 * (settings.lr - settings.min_lr) * (
            1 + math.cos(math.pi * frac)
        )

    loss_fn = nn.CrossEntropyLoss(ignore_index=TGT_PAD_ID, label_smoothing=settings.label_smoothing)
    best: dict[str, Any] = {"wer": 2.0}
    best_state = _cpu_state(model)
    recent: deque[dict[str, torch.Tensor]] = deque(maxlen=max(1, settings.average))
    history: list[dict[str, Any]] = []
    step = 0
    first = 1
    if resume is not None and resume.exists():
        saved = torch.load(resume, map_location="cpu", weights_only=False)
        if saved["settings"] != settings.__dict__:
            raise ValueError(f"{resume}: saved with other settings {saved['settings']}")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        best, best_state, history = saved["best"], saved["best_state"], saved["history"]
        recent.extend(saved["recent"])
        step, first = saved["step"], saved["epoch"] + 1
        log(f"resumed from {resume} after epoch {saved['epoch']}")
    for epoch in range(first, settings.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total_loss = 0.0
        for batch in _batches(pairs, settings.batch_size, rng):
            src, src_len, dec_in, tgt = (t.to(device) for t in _tensors(batch))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            logits = model(src, src_len, dec_in)
            loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
            opt.step()
            total_loss += loss.item()
            step += 1
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": total_loss / steps_per_epoch,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        state = _cpu_state(model)
        if settings.average > 1:
            recent.append(state)
        if epoch % settings.val_every == 0 or epoch == settings.epochs:
            on_cpu = copy.deepcopy(model).cpu() if device.type != "cpu" else model
            rates = error_rates(val_sample, decode_entries(on_cpu, vocab, val_sample))
            row.update(val_wer=rates["wer"], val_per=rates["per"])
            if rates["wer"] < best["wer"]:
                best = {"wer": rates["wer"], "per": rates["per"], "epoch": epoch}
                best_state = state
                if on_best is not None:
                    on_best(best_state, epoch)
            if len(recent) > 1:  # the mean of the last epochs' weights is a candidate too
                avg_state = average_states(recent)
                avg_model = copy.deepcopy(on_cpu)
                avg_model.load_state_dict(avg_state)
                avg = error_rates(val_sample, decode_entries(avg_model, vocab, val_sample))
                row.update(val_wer_avg=avg["wer"], val_per_avg=avg["per"], averaged=len(recent))
                if avg["wer"] < best["wer"]:
                    best = {"wer": avg["wer"], "per": avg["per"], "epoch": epoch}
                    best["averaged"] = len(recent)
                    best_state = avg_state
                    if on_best is not None:
                        on_best(best_state, epoch)
        history.append(row)
        if resume is not None:
            saved = {
                "settings": settings.__dict__,
                "epoch": epoch,
                "step": step,
                "model": _cpu_state(model),
                "optimizer": opt.state_dict(),
                "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "best": best,
                "best_state": best_state,
                "recent": list(recent),
                "history": history,
            }
            resume.parent.mkdir(parents=True, exist_ok=True)
            tmp = resume.with_name(resume.name + ".tmp")
            torch.save(saved, tmp)
            tmp.replace(resume)  # a run stopped while writing keeps the previous epoch's state
        log(
            " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        )
    model.cpu()
    model.load_state_dict(best_state)
    model.eval()
    return {"best": best, "history": history}


def with_input_feeding(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's weights without input feeding as weights of the same model with it: the
    decoder GRU's new input columns (the fed vector) are zero, so it computes the same."""
    out = dict(state)
    w = state["decoder.weight_ih_l0"]
    feed = state["decoder.weight_hh_l0"].size(1)
    out["decoder.weight_ih_l0"] = torch.cat([w, w.new_zeros(w.size(0), feed)], dim=1)
    return out


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU (what checkpoints and validation use)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train(
    out: Path,
    config_overrides: dict[str, Any] | None = None,
    settings: TrainSettings | None = None,
    log: Callable[[str], None] = print,
    init: Path | None = None,
    resume: Path | None = None,
) -> dict[str, Any]:
    """Load CMUdict, split it, train (from `init`'s weights when given: a second stage with
    its own schedule; continuing the run saved in `resume` when that file exists), score
    validation and test (greedy), save the checkpoint."""
    settings = settings or TrainSettings()
    splits = split_entries(load_cmudict())
    vocab = Vocab.build(splits["train"])
    config = G2PConfig(len(vocab.chars), len(vocab.phonemes), **(config_overrides or {}))
    torch.manual_seed(settings.seed)
    model = G2P(config)
    before: list[dict[str, Any]] = []
    if init is not None:
        prev, prev_vocab, prev_ckpt = load_checkpoint(init)
        widen = config.input_feeding and not prev.config.input_feeding
        expected = replace(config, input_feeding=False) if widen else config
        if prev_vocab != vocab or prev.config != expected:
            raise ValueError(f"{init}: another architecture or vocabulary")
        model.load_state_dict(with_input_feeding(prev.state_dict()) if widen else prev.state_dict())
        before = [*prev_ckpt["training"].get("stages", []), prev_ckpt["training"]]
        before[-1] = {k: v for k, v in before[-1].items() if k != "stages"}
    log(
        f"words train={len(splits['train'])} val={len(splits['val'])} test={len(splits['test'])}"
        f" params={sum(p.numel() for p in model.parameters())}"
    )
    t0 = time.perf_counter()
    base = {
        "config": config.to_dict(),
        "vocab": {"chars": list(vocab.chars), "phonemes": list(vocab.phonemes)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)

    def save_best(state: dict[str, Any], epoch: int) -> None:
        torch.save({**base, "state_dict": state, "training": {"best_epoch": epoch}}, out)

    result = fit(model, vocab, splits["train"], splits["val"], settings, log, save_best, resume)
    metrics = {
        name: error_rates(splits[name], decode_entries(model, vocab, splits[name]))
        for name in ("val", "test")
    }
    log(f"greedy: {metrics}")
    ckpt = {
        "config": config.to_dict(),
        "vocab": {"chars": list(vocab.chars), "phonemes": list(vocab.phonemes)},
        "state_dict": model.state_dict(),
        "metrics": {"greedy": metrics},
        "training": {
            **settings.__dict__,
            "data": "cmudict",
            "split": "md5(word.lower()) % 10: 0 test, 1 validation, else train",
            "best_epoch": result["best"].get("epoch"),
            "best_averaged": result["best"].get("averaged", 1),  # epochs averaged, ending there
            "history": result["history"],
            "train_seconds": round(time.perf_counter() - t0, 1),
            "torch": torch.__version__,
            "init": str(init) if init else None,
            "stages": before,  # the earlier stages this one continued, oldest first
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return ckpt


def load_checkpoint(path: Path) -> tuple[G2P, Vocab, dict[str, Any]]:
    """The model (eval mode), its vocabularies and the whole checkpoint dict."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = G2P(G2PConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    vocab = Vocab(tuple(ckpt["vocab"]["chars"]), tuple(ckpt["vocab"]["phonemes"]))
    return model, vocab, ckpt
