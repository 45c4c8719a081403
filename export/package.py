"""Export + parity + metadata in one step: what `make export` does to a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.model import IntentSlotRNN
from export.onnx_export import embed_metadata, export_onnx
from export.parity import ParityCase, ParityRow, check_parity, summary
from modelspec.context import context_metadata
from modelspec.io import IOSpec
from modelspec.meta import ModelMetadata
from modelspec.names import METADATA_KEY
from modelspec.tokenizer import Tokenizer


@dataclass
class Packaged:
    """What packaging produced."""

    spec: IOSpec
    rows: list[ParityRow]
    meta: ModelMetadata


def slim_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of an evaluation (no per-example data)."""
    keep: tuple[str, ...] = ("n", "intent_accuracy", "slot_f1", "slot_precision", "slot_recall")
    keep += (
        "novel_n",
        "novel_intent_accuracy",
        "accepted_and_correct",
        "false_reject_rate",
        "reject_rate",
        "median_confidence",
    )
    out = {k: m[k] for k in keep if k in m}
    if "by_kind" in m:
        out["by_kind"] = {k: {kk: v[kk] for kk in keep if kk in v} for k, v in m["by_kind"].items()}
    for k in ("worst_confusions", "misses", "slots"):
        if k in m:
            out[k] = m[k]
    return out


def package(
    model: IntentSlotRNN,
    tokenizer: Tokenizer,
    intents: list[str],
    tags: list[str],
    out: str | Path,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    cases: list[ParityCase] | None = None,
    calibration: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> Packaged:
    """Export `model` to `out`, prove parity (ParityError on a miss), embed the metadata."""
    spec = export_onnx(model, out)
    rows = check_parity(model, out, cases=cases)
    par = summary(rows)
    tok = tokenizer.to_dict()
    meta = ModelMetadata(
        vocab=tok["vocab"],
        tokenizer=tok["rules"],
        intents=list(intents),
        slots=list(tags),
        config=model.config.to_dict(),
        metrics={k: slim_metrics(v) for k, v in (metrics or {}).items()},
        parity={k: v for k, v in par.items() if k != "cases"} | {"cases": len(rows)},
        io=spec.to_dict(),
        training=training or {},
        calibration=calibration or {},
        context=context_metadata() if model.config.context_dim else {},
        values=values or {},
    )
    embed_metadata(out, METADATA_KEY, meta.to_json())
    return Packaged(spec, rows, meta)
