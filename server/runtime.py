"""The onnxruntime session of one model: loading, checks at load, input validation, runs.

numpy in, numpy out; no grpc here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelspec.meta import MetadataError, ModelMetadata
from modelspec.names import (
    C0,
    C_N,
    H0,
    H_N,
    INPUT_IDS,
    INTENT_LOGITS,
    LENGTHS,
    METADATA_KEY,
    OUTPUTS,
    SLOT_LOGITS,
    input_names,
    output_names,
)
from modelspec.tags import allowed_transitions
from modelspec.tokenizer import Tokenizer
from server.errors import InvalidArgument, ModelLoadError

log = logging.getLogger("rnnserve.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as the server describes it."""

    name: str
    dtype: str  # numpy dtype name: int64, float32
    shape: tuple[int | str, ...]  # ints, or axis names for dynamic axes
    optional: bool = False


def choose_providers(device: str) -> list[str]:
    """Execution providers for --device; raises ModelLoadError when cuda is asked but absent."""
    available = ort.get_available_providers()
    if device == "cuda":
        if CUDA not in available:
            raise ModelLoadError(
                "--device cuda: onnxruntime offers no CUDAExecutionProvider here "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
            )
        return [CUDA, CPU]
    if device == "auto" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


class ModelRuntime:
    """One loaded model: metadata, tokenizer, onnxruntime session and its input checks."""

    def __init__(
        self,
        path: Path,
        name: str,
        device: str = "auto",
        intra_op_threads: int = 1,
        allow_missing_parity: bool = False,
        max_tokens: int = 512,
    ) -> None:
        self.path = Path(path)
        self.name = name
        self.max_tokens = max_tokens
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: no such model file")
        providers = choose_providers(device)
        so = ort.SessionOptions()
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # h0/c0 are overridable initializers by design: no warning
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises several unrelated types here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model ({first})") from None
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != CUDA:
            raise ModelLoadError(f"{self.path}: --device cuda, but onnxruntime fell back to CPU")
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise ModelLoadError(
                f"{self.path}: no '{METADATA_KEY}' metadata (export it with "
                "`python -m export export`)"
            )
        try:
            self.meta = ModelMetadata.from_json(raw)
            self.tokenizer: Tokenizer = self.meta.make_tokenizer()
        except (MetadataError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{self.path}: bad '{METADATA_KEY}' metadata ({exc})") from None
        self._check_graph()
        self._check_parity(allow_missing_parity)
        cfg = self.meta.config
        self.cell = self.meta.cell
        self.bidirectional = bool(cfg["bidirectional"])
        self.state_shape = self.meta.state_shape
        self.vocab_size = len(self.meta.vocab)
        self.input_names = input_names(self.cell)
        self.output_names = output_names(self.cell)
        self.inputs = self._tensor_infos(True)
        self.outputs = self._tensor_infos(False)
        # Below this intent probability the answer is "no intent" (calibrated at training).
        calibration = getattr(self.meta, "calibration", None) or {}
        self.no_intent_threshold = float(calibration.get("threshold", 0.0) or 0.0)
        # Slot tags are decoded as the best path that obeys BIO (an I-x only after B-x/I-x).
        self.tag_start, self.tag_trans = allowed_transitions(self.meta.slots)
        log.info(
            "model loaded",
            extra={
                "model": name,
                "path": str(self.path),
                "device": device,
                "provider": self.provider,
                "cell": self.cell,
            },
        )

    # ------------------------------------------------------------------ load checks

    def _check_graph(self) -> None:
        cell = self.meta.cell
        graph_in = [i.name for i in self.session.get_inputs()]
        graph_in += [i.name for i in self.session.get_overridable_initializers()]
        graph_out = [o.name for o in self.session.get_outputs()]
        missing = [n for n in input_names(cell) if n not in graph_in]
        missing += [n for n in output_names(cell) if n not in graph_out]
        if missing:
            raise ModelLoadError(f"{self.path}: the graph lacks {', '.join(missing)}")
        ld, _ = self.meta.state_shape
        if self.session.get_outputs()[graph_out.index(H_N)].shape[0] not in (ld, None):
            raise ModelLoadError(f"{self.path}: h_n does not match the metadata's config")

    def _check_parity(self, allow_missing: bool) -> None:
        par = self.meta.parity
        if not par or "max_abs_diff" not in par:
            if allow_missing:
                log.warning(
                    "%s: no parity figures; serving anyway (--allow-missing-parity)", self.path
                )
                return
            raise ModelLoadError(
                f"{self.path}: the model has no parity figures; re-export it "
                "or pass --allow-missing-parity"
            )
        tol = float(par.get("tolerance", 1e-4))
        if not par.get("passed") or not float(par["max_abs_diff"]) <= tol:
            raise ModelLoadError(
                f"{self.path}: parity failed at export (max abs diff {par['max_abs_diff']} > {tol})"
            )

    def _tensor_infos(self, inputs: bool) -> list[TensorInfo]:
        ld, h = self.state_shape
        n_dir = 2 if self.bidirectional else 1
        width = n_dir * h
        shapes: dict[str, tuple[int | str, ...]] = {
            INPUT_IDS: ("batch", "time"),
            LENGTHS: ("batch",),
            H0: (ld, "batch", h),
            C0: (ld, "batch", h),
            OUTPUTS: ("batch", "time", width),
            SLOT_LOGITS: ("batch", "time", len(self.meta.slots)),
            INTENT_LOGITS: ("batch", len(self.meta.intents)),
            H_N: (ld, "batch", h),
            C_N: (ld, "batch", h),
        }
        if inputs:
            return [
                TensorInfo(
                    n,
                    "int64" if n in (INPUT_IDS, LENGTHS) else "float32",
                    shapes[n],
                    optional=n in (H0, C0, LENGTHS),
                )
                for n in self.input_names
            ]
        return [TensorInfo(n, "float32", shapes[n]) for n in self.output_names]

    # ------------------------------------------------------------------ validation

    def check_batch(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        """Raise InvalidArgument unless ids [B,T] and lengths [B] describe a valid batch."""
        if ids.ndim != 2:
            raise InvalidArgument(
                f"{INPUT_IDS} must have 2 dimensions [batch, time], got {ids.ndim}"
            )
        batch, time = ids.shape
        if batch < 1 or time < 1:
            raise InvalidArgument(f"{INPUT_IDS} is empty (shape [{batch}, {time}])")
        self.check_token_count(time)
        if lengths.shape != (batch,):
            raise InvalidArgument(f"{LENGTHS} must have shape [{batch}], got {list(lengths.shape)}")
        if lengths.min() < 1 or lengths.max() > time:
            raise InvalidArgument(f"each of {LENGTHS} must be between 1 and {time}")
        self.check_ids(ids)

    def check_token_count(self, n: int) -> None:
        """Raise InvalidArgument when an utterance, chunk or row is over --max-tokens."""
        if n > self.max_tokens:
            raise InvalidArgument(f"{n} tokens is over the limit of {self.max_tokens}")

    def check_ids(self, ids: np.ndarray) -> None:
        """Raise InvalidArgument unless every id is inside the vocabulary."""
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise InvalidArgument(
                f"token id {bad} is outside the vocabulary [0, {self.vocab_size})"
            )

    def check_state(self, name: str, state: np.ndarray, batch: int) -> None:
        """Raise InvalidArgument unless `state` is [layers*dirs, batch or 1, hidden] and finite."""
        ld, h = self.state_shape
        if (
            state.ndim != 3
            or state.shape[0] != ld
            or state.shape[2] != h
            or state.shape[1]
            not in (
                1,
                batch,
            )
        ):
            raise InvalidArgument(
                f"{name} must have shape [{ld}, {batch}, {h}], got {list(state.shape)}"
            )
        if not np.isfinite(state).all():
            raise InvalidArgument(f"{name} contains NaN or infinity")

    # ------------------------------------------------------------------ runs

    def run(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
        outputs: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """One onnxruntime call on validated inputs; returns the requested outputs by name."""
        feeds: dict[str, np.ndarray] = {INPUT_IDS: ids, LENGTHS: lengths}
        if h0 is not None:
            feeds[H0] = np.ascontiguousarray(h0, dtype=np.float32)
        if c0 is not None and self.cell == "lstm":
            feeds[C0] = np.ascontiguousarray(c0, dtype=np.float32)
        names = outputs or self.output_names
        return dict(zip(names, self.session.run(names, feeds)))

    def warmup(self, runs: int) -> None:
        """Run a few representative shapes so the first real request pays no set-up cost."""
        for i in range(runs):
            t = 4 + 4 * i
            ids = np.full((1 + i, t), 1, dtype=np.int64)
            self.run(ids, np.full((1 + i,), t, dtype=np.int64))
