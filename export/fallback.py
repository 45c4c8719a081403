"""Give a context-taking checkpoint a context-free fallback network, and calibrate the pair.

    python -m export.fallback --checkpoint models/intent.pt --plain build/intent-plain.pt

A network trained with simulated homes tags names it never heard less well when no home is
sent than one trained without homes (docs/model.md, "Without a context: the fallback"). The
combined model (export/model.py, `fallback`) answers each row whose context features are all
zero with the plain network and every other row with the context network, so a request
without a context (or whose context names nothing in the utterance) is answered exactly as
the plain network answers it. The no-intent score is chosen and calibrated as training does
(export/quality.py) — without a context, that is on the plain network; the context network's
intent logits are then moved by one constant (`context_shift`) so that the pair's threshold
falls where the context network's own threshold for that score falls (calibrated as it would
be alone), so a row with a context is accepted or rejected exactly as the context network
alone decides (max_logit and energy move with the logits; max_softmax does not, shift 0).
The checkpoint is rewritten with the pair's weights, figures and calibration;
`python -m export export` carries them into the ONNX file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.context_sim import EVAL_SIM
from export.data import trained_split
from export.languages import DEFAULT_LANGUAGE
from export.model import IntentSlotRNN
from export.quality import (
    NAMES_KIND,
    NAMES_TARGET_FRR,
    calibrate,
    choose_score,
    eval_path,
    format_quality,
    intent_logits,
    load_out_of_scope,
    quality_report,
)
from export.train import (
    Checkpoint,
    TrainingData,
    encode,
    load_checkpoint,
    score,
)
from modelspec.calibration import MAX_SOFTMAX, in_scope_scores

SPLITS = ("train", "val", "test")


class FallbackError(ValueError):
    """The two checkpoints cannot be paired."""


def attach(context: IntentSlotRNN, plain: IntentSlotRNN, shift: float = 0.0) -> IntentSlotRNN:
    """The combined network: `context`'s weights, `plain`'s as its fallback."""
    cfg = context.config
    if cfg.fallback:
        raise FallbackError("the checkpoint has a fallback already")
    if plain.config != replace(cfg, context_dim=0):
        raise FallbackError(
            "the plain checkpoint's architecture must be the context checkpoint's without a "
            f"context input: {plain.config} vs {cfg}"
        )
    model = IntentSlotRNN(replace(cfg, fallback=True))
    state = dict(context.state_dict())
    state |= {f"fallback.{k}": v for k, v in plain.state_dict().items()}
    state["context_shift"] = torch.tensor(float(shift))
    model.load_state_dict(state)
    return model.eval()


def _check_pair(ctx: Checkpoint, plain: Checkpoint) -> None:
    """Same vocabulary, tokenizer rules and labels, or FallbackError."""
    if ctx.tokenizer.to_dict() != plain.tokenizer.to_dict():
        raise FallbackError("the two checkpoints have different vocabularies or tokenizers")
    if ctx.labels.intents != plain.labels.intents or ctx.labels.tags != plain.labels.tags:
        raise FallbackError("the two checkpoints have different intents or tags")


def plain_network(path: Path) -> Checkpoint:
    """The checkpoint trained without a context at `path`; for a paired checkpoint (the shipped
    default model), its fallback network with that network's own training and figures."""
    ck = load_checkpoint(path)
    if ck.model.fallback is None:
        return ck
    fb = ck.training.get("fallback", {})
    training = {k: v for k, v in ck.training.items() if k != "fallback"}
    training |= {k: fb[k] for k in ("train_config", "seconds", "best_epoch") if k in fb}
    training["fallback_checkpoint"] = fb.get("checkpoint", path.name)
    metrics = dict(fb.get("plain_network_metrics", {}))
    return Checkpoint(ck.model.fallback, ck.tokenizer, ck.labels, metrics, training)


def combine(
    checkpoint: Path, plain_path: Path, report: Path | None, data_dir: str | None = None
) -> dict[str, Any]:
    """Rewrite `checkpoint` as the pair of its network and `plain_path`'s (a checkpoint trained
    without a context, or a pair, whose fallback is taken); return its figures."""
    ctx, plain = load_checkpoint(checkpoint), plain_network(plain_path)
    _check_pair(ctx, plain)
    language = str(ctx.training.get("language", DEFAULT_LANGUAGE))
    seed = int(ctx.training.get("seed", 13))
    splits = {n: trained_split(ctx.training, data_dir, n) for n in SPLITS}
    enc = {n: encode(splits[n], ctx.tokenizer, ctx.labels, n) for n in ("val", "test")}
    data = TrainingData(ctx.tokenizer, ctx.labels, enc, language)
    model = attach(ctx.model, plain.model)

    # The score, chosen without a context (the plain network), as training chooses it.
    val = splits["val"]
    on = np.asarray([e.kind == NAMES_KIND for e in val], dtype=bool)
    lv = intent_logits(model, ctx.tokenizer, [e.text for e in val])
    oos_val = load_out_of_scope(eval_path("out_of_scope_validation.txt", language))
    chosen = choose_score(lv[on], intent_logits(model, ctx.tokenizer, oos_val), NAMES_TARGET_FRR)
    name = max(chosen, key=lambda k: chosen[k]) if oos_val else MAX_SOFTMAX
    shift = 0.0
    if name != MAX_SOFTMAX:  # the context network keeps its own threshold for that score
        plain_t = calibrate(in_scope_scores(lv[on], name), NAMES_TARGET_FRR)
        own = intent_logits(ctx.model, ctx.tokenizer, [e.text for e in val])[on]
        shift = plain_t - calibrate(in_scope_scores(own, name), NAMES_TARGET_FRR)
    model = attach(ctx.model, plain.model, shift)

    metrics: dict[str, Any] = {n: score(model, enc[n], ctx.labels) for n in ("val", "test")}
    for n in ("val", "test"):
        metrics[f"{n}_context"] = score(model, enc[n], ctx.labels, data.plan(n, EVAL_SIM, seed))
    metrics |= quality_report(
        model,
        ctx.tokenizer,
        ctx.labels.intents,
        val,
        splits["test"],
        language=language,
        train=splits["train"],
        tags=ctx.labels.tags,
        target_frr=NAMES_TARGET_FRR,
        calibrate_kind=NAMES_KIND,
        score=name,
    )
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw["config"] = model.config.to_dict()
    raw["state_dict"] = model.state_dict()
    raw["metrics"] = metrics
    raw["training"]["fallback"] = {
        "checkpoint": plain.training.get("fallback_checkpoint", plain_path.name),
        "context_shift": shift,
        "score": name,
        "train_config": plain.training.get("train_config", {}),
        "seconds": plain.training.get("seconds", 0.0),
        "best_epoch": plain.training.get("best_epoch", 0),
        "plain_network_metrics": {k: plain.metrics[k] for k in ("val", "test")},
        "context_network_metrics": {k: ctx.metrics[k] for k in ("val", "test")},
    }
    torch.save(raw, checkpoint)
    if report is not None and report.exists():
        data_json = json.loads(report.read_text())
        data_json["metrics"] = metrics
        data_json["arch"] = model.config.to_dict()
        data_json.setdefault("data", {})["fallback"] = raw["training"]["fallback"]
        report.write_text(json.dumps(data_json, indent=2, ensure_ascii=False) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.fallback", description=__doc__)
    p.add_argument("--checkpoint", default="models/intent.pt", help="rewritten in place")
    p.add_argument(
        "--plain",
        required=True,
        help="the same architecture trained --no-context, or a paired checkpoint (its fallback)",
    )
    p.add_argument("--report", help="default: the checkpoint's path ending in .report.json")
    p.add_argument("--data-dir", help="where the splits are (default: the language's)")
    p.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="leave a unidirectional model or one without a context input as it is (exit 0)",
    )
    args = p.parse_args(argv)
    ckpt = Path(args.checkpoint)
    report = Path(args.report) if args.report else ckpt.with_suffix(".report.json")
    cfg = load_checkpoint(ckpt).model.config
    if args.skip_unsupported and not (cfg.bidirectional and cfg.context_dim and not cfg.fallback):
        print(f"{ckpt}: left as it is (unidirectional, without a context input, or paired)")
        return 0
    try:
        metrics = combine(ckpt, Path(args.plain), report, args.data_dir)
    except FallbackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for n in ("test", "test_context"):
        m = metrics[n]
        names = m.get("by_kind", {}).get(NAMES_KIND, {})
        print(
            f"{n:13s} intent {m['intent_accuracy']:.4f} slot F1 {m['slot_f1']:.4f}  "
            f"held-out names {names.get('intent_accuracy', 0):.4f} / {names.get('slot_f1', 0):.4f}"
        )
    print("\n".join(format_quality(metrics)))
    print(f"context shift {metrics['calibration'].get('score')}: see the checkpoint's training")
    print(f"checkpoint {ckpt}\nreport     {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
