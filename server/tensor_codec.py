"""rnnserve.v1 `Tensor` messages <-> float32 numpy arrays, for every typed servicer."""

from __future__ import annotations

import numpy as np

from rnnserve.v1 import rnnserve_pb2 as pb
from server.errors import InvalidArgument


def to_tensor(arr: np.ndarray) -> pb.Tensor:
    """A numpy array as a float32 Tensor message."""
    a = np.asarray(arr, dtype=np.float32)
    return pb.Tensor(shape=list(a.shape), values=a.ravel().tolist())


def from_tensor(t: pb.Tensor, name: str, max_rank: int = 8) -> np.ndarray:
    """A Tensor message as a float32 array; InvalidArgument when values and shape disagree or
    it has more than `max_rank` dims."""
    shape = list(t.shape)
    if any(d < 0 for d in shape) or len(shape) > max_rank:
        raise InvalidArgument(f"{name}: bad shape {shape}")
    n = int(np.prod(shape)) if shape else 0
    if n != len(t.values) or n == 0:
        raise InvalidArgument(f"{name}: shape {shape} needs {n} values, got {len(t.values)}")
    return np.asarray(t.values, dtype=np.float32).reshape(shape)
