"""How exactly a model runs on its execution provider, measured once at load.

The export certifies the graph against torch on CPU; a GPU provider runs other kernels. At load a
model on a provider other than CPU runs a fixed probe batch (seeded token ids, mixed lengths) on
that provider and on a CPU session of the same file, and each probe row alone, and keeps two
figures: the largest |provider − CPU| over every output and valid step, and the largest |row
alone − the same row in the padded batch| on the provider. ModelInfo and the v2 ModelConfig
report them; a CPU model reports none (its batching equality is tested, 0.0 by construction of
the packed graph). numpy and onnxruntime only; no grpc here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelspec.batch import pad_rows
from modelspec.names import C_N, H_N, OUTPUTS, SLOT_LOGITS
from server.runtime import CPU, ModelRuntime

PER_STEP = (OUTPUTS, SLOT_LOGITS)
STATES = (H_N, C_N)
PROBE_LENGTHS = (1, 3, 5, 8, 13, 21, 34, 64)  # one row each, padded to the longest
PROBE_SEED = 0


@dataclass(frozen=True)
class DeviceParity:
    """The two figures, in the outputs' own units (logits, states)."""

    provider: str
    max_abs_diff_vs_cpu: float
    max_abs_diff_alone_vs_batch: float


def probe_rows(vocab_size: int) -> list[np.ndarray]:
    """The probe's token ids: one row per PROBE_LENGTHS entry, ids drawn past the specials."""
    rng = np.random.default_rng(PROBE_SEED)
    low = min(3, vocab_size - 1)
    return [rng.integers(low, vocab_size, n).astype(np.int64) for n in PROBE_LENGTHS]


def _row(out: dict[str, np.ndarray], name: str, r: int, steps: int) -> np.ndarray:
    """Row `r` of one output, valid steps only."""
    arr = out[name]
    if name in STATES:
        return arr[:, r]
    if name in PER_STEP:
        return arr[r, :steps]
    return arr[r]


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], rows: list[np.ndarray]) -> float:
    worst = 0.0
    for name in a:
        for r, ids in enumerate(rows):
            d = np.abs(_row(a, name, r, len(ids)) - _row(b, name, r, len(ids)))
            worst = max(worst, float(d.max()) if d.size else 0.0)
    return worst


def measure(rt: ModelRuntime, reference: ModelRuntime) -> DeviceParity:
    """The probe on `rt` against `reference` (a CPU session of the same file)."""
    rows = probe_rows(len(rt.meta.vocab))
    ids, lengths = pad_rows(rows)
    on_device = rt.run(ids, lengths)
    on_cpu = reference.run(ids, lengths)
    alone_worst = 0.0
    for r, row in enumerate(rows):
        alone = rt.run(row[None, :], np.array([len(row)], dtype=np.int64))
        alone_worst = max(
            alone_worst,
            max(
                float(np.abs(_row(alone, n, 0, len(row)) - _row(on_device, n, r, len(row))).max())
                for n in alone
            ),
        )
    return DeviceParity(rt.provider, _max_diff(on_device, on_cpu, rows), alone_worst)


def check(rt: ModelRuntime) -> DeviceParity | None:
    """The figures for a model on a provider other than CPU; None on CPU."""
    if rt.provider == CPU:
        return None
    reference = ModelRuntime(rt.path, device="cpu", allow_missing_parity=True)
    return measure(rt, reference)
