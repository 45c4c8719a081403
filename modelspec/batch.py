"""Padding rows of token ids into one batch: the one helper the trainer, the evaluations, the
parity check and the server's batcher share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelspec.names import PAD_ID


def pad_rows(
    blocks: Sequence[Sequence[int] | np.ndarray], pad_id: int = PAD_ID
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of different lengths as one int64 array [rows, longest] padded with `pad_id`,
    and each row's width [rows]. A block is one row [T] or several rows of one width [R, T]."""
    arrays = [np.asarray(b, dtype=np.int64) for b in blocks]
    arrays = [a[None, :] if a.ndim == 1 else a for a in arrays]
    rows = sum(a.shape[0] for a in arrays)
    width = max((a.shape[1] for a in arrays), default=0)
    ids = np.full((rows, width), pad_id, dtype=np.int64)
    widths = np.empty(rows, dtype=np.int64)
    r = 0
    for a in arrays:
        n, t = a.shape
        ids[r : r + n, :t] = a
        widths[r : r + n] = t
        r += n
    return ids, widths
