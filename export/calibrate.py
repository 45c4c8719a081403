"""Calibrate a trained checkpoint's no-intent threshold again, without training it again.

    python -m export.calibrate --checkpoint models/intent.pt [--score auto|max_softmax|...]

runs the quality report (export/quality.py) on the checkpoint's own validation and test splits
with the chosen score and writes the new `calibration` and quality figures into the checkpoint
and its report; `python -m export export` then carries them into the ONNX metadata. The recipe
is the training command's: models that take the context input calibrate on the validation
sentences with held-out names at NAMES_TARGET_FRR, others on all of validation at TARGET_FRR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from export.data import trained_split
from export.languages import DEFAULT_LANGUAGE
from export.quality import (
    AUTO_SCORE,
    NAMES_KIND,
    NAMES_TARGET_FRR,
    TARGET_FRR,
    format_quality,
    quality_report,
)
from export.train import load_checkpoint
from modelspec.calibration import SCORES
from modelspec.context import CONFIG_CONTEXT_DIM


def recalibrate(
    checkpoint: Path, report: Path | None, score: str, data_dir: str | None = None
) -> dict[str, Any]:
    """The quality report of `checkpoint` with `score`, written into it and into `report`."""
    ckpt = load_checkpoint(checkpoint)
    splits = {n: trained_split(ckpt.training, data_dir, n) for n in ("train", "val", "test")}
    takes_context = bool(ckpt.model.config.to_dict().get(CONFIG_CONTEXT_DIM))
    quality = quality_report(
        ckpt.model,
        ckpt.tokenizer,
        ckpt.labels.intents,
        splits["val"],
        splits["test"],
        language=str(ckpt.training.get("language", DEFAULT_LANGUAGE)),
        train=splits["train"],
        tags=ckpt.labels.tags,
        target_frr=NAMES_TARGET_FRR if takes_context else TARGET_FRR,
        calibrate_kind=NAMES_KIND if takes_context else "",
        score=score,
    )
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw["metrics"].update(quality)
    torch.save(raw, checkpoint)
    if report is not None and report.exists():
        data = json.loads(report.read_text())
        data.setdefault("metrics", {}).update(quality)
        report.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return quality


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.calibrate", description=__doc__)
    p.add_argument("--checkpoint", default="models/intent.pt")
    p.add_argument("--report", help="default: the checkpoint's path ending in .report.json")
    p.add_argument("--score", default=AUTO_SCORE, choices=[AUTO_SCORE, *SCORES])
    p.add_argument("--data-dir", help="where the splits are (default: the language's)")
    args = p.parse_args(argv)
    ckpt = Path(args.checkpoint)
    report = Path(args.report) if args.report else ckpt.with_suffix(".report.json")
    quality = recalibrate(ckpt, report, args.score, args.data_dir)
    print("\n".join(format_quality(quality)))
    print(f"checkpoint {ckpt}\nreport     {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
