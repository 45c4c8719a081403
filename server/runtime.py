"""The onnxruntime session of one model: loading, the checks at load, runs.

numpy in, numpy out; no grpc here. Requests are validated before they reach `run`
(server/validation.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelspec.io import IOSpec, IOSpecError
from modelspec.meta import MetadataError, ModelMetadata
from modelspec.names import C0, CONTEXT, H0, H_N, INPUT_IDS, LENGTHS, METADATA_KEY
from modelspec.tokenizer import Tokenizer
from server.errors import ModelLoadError, load_error

log = logging.getLogger("rnnserve.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


Provider = str | tuple[str, dict[str, str]]


def choose_providers(device: str, cuda_tf32: bool = False) -> list[Provider]:
    """Execution providers (with their options) for --device; raises ModelLoadError when cuda is
    asked but absent. CUDA runs exact float32 unless `cuda_tf32` (its own default is TF32)."""
    available = ort.get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise ModelLoadError(
            "--device cuda: onnxruntime offers no CUDAExecutionProvider here "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use --device cpu"
        )
    if device == "cuda" or (device == "auto" and CUDA in available):
        return [(CUDA, {"use_tf32": "1" if cuda_tf32 else "0"}), CPU]
    return [CPU]


class ModelRuntime:
    """One loaded model file: its metadata, I/O contract, tokenizer and onnxruntime session."""

    def __init__(
        self,
        path: Path,
        *,
        device: str = "auto",
        intra_op_threads: int = 1,
        allow_missing_parity: bool = False,
        cuda_tf32: bool = False,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise load_error(self.path, "no such model file")
        so = ort.SessionOptions()
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3  # h0/c0 are overridable initializers by design: no warning
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(self.path), so, providers=choose_providers(device, cuda_tf32)
            )
        except Exception as exc:  # onnxruntime raises several unrelated types here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise load_error(self.path, "not a loadable ONNX model", first) from None
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != CUDA:
            raise load_error(self.path, "--device cuda, but onnxruntime fell back to CPU")
        # TF32 as the session really runs it (None off CUDA): what ModelInfo/ModelConfig report.
        cuda_options = self.session.get_provider_options().get(CUDA)
        asked = "1" if cuda_tf32 else "0"
        self.tf32 = None if cuda_options is None else cuda_options.get("use_tf32", asked) == "1"
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise load_error(
                self.path,
                f"no '{METADATA_KEY}' metadata (export it with `python -m export export`)",
            )
        try:
            self.meta = ModelMetadata.from_json(raw)
            self.tokenizer: Tokenizer = self.meta.make_tokenizer()
            self.io = IOSpec.from_dict(self.meta.io)
        except (MetadataError, IOSpecError, ValueError, KeyError, TypeError) as exc:
            raise load_error(self.path, f"bad '{METADATA_KEY}' metadata", str(exc)) from None
        self._check_graph()
        self._check_parity(allow_missing_parity)
        self.cell = self.meta.cell
        self.bidirectional = bool(self.meta.config["bidirectional"])
        self.state_shape = self.meta.state_shape
        self.output_names = self.io.output_names

    # ------------------------------------------------------------------ load checks

    def _check_graph(self) -> None:
        """The graph has every tensor the metadata's `io` promises, with its fixed dims."""
        graph_in = {i.name: i.shape for i in self.session.get_inputs()}
        graph_in |= {i.name: i.shape for i in self.session.get_overridable_initializers()}
        graph_out = {o.name: o.shape for o in self.session.get_outputs()}
        missing = [t.name for t in self.io.inputs if t.name not in graph_in]
        missing += [t.name for t in self.io.outputs if t.name not in graph_out]
        if missing or INPUT_IDS not in graph_in:
            raise load_error(self.path, f"the graph lacks {', '.join(missing or [INPUT_IDS])}")
        for t in self.io.outputs:
            shape = graph_out[t.name]
            fixed = [(g, d) for g, d in zip(shape, t.shape) if isinstance(g, int) and g > 0]
            if len(shape) != t.rank or any(isinstance(d, int) and g != d for g, d in fixed):
                raise load_error(self.path, f"{t.name} does not match the metadata's io")
        ld, _ = self.meta.state_shape
        if graph_out[H_N][0] not in (ld, None):
            raise load_error(self.path, "h_n does not match the metadata's config")

    def _check_parity(self, allow_missing: bool) -> None:
        par = self.meta.parity
        if not par or "max_abs_diff" not in par:
            if allow_missing:
                log.warning(
                    "%s: no parity figures; serving anyway (--allow-missing-parity)", self.path
                )
                return
            raise load_error(
                self.path,
                "the model has no parity figures; re-export it or pass --allow-missing-parity",
            )
        tol = float(par.get("tolerance", 1e-4))
        if not par.get("passed") or not float(par["max_abs_diff"]) <= tol:
            raise load_error(
                self.path, f"parity failed at export (max abs diff {par['max_abs_diff']} > {tol})"
            )

    # ------------------------------------------------------------------ runs

    def run(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        h0: np.ndarray | None = None,
        c0: np.ndarray | None = None,
        outputs: list[str] | None = None,
        context: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """One onnxruntime call on validated inputs; returns the requested outputs by name."""
        feeds: dict[str, np.ndarray] = {INPUT_IDS: ids, LENGTHS: lengths}
        if context is not None:
            feeds[CONTEXT] = context
        if h0 is not None:
            feeds[H0] = np.ascontiguousarray(h0, dtype=np.float32)
        if c0 is not None:
            feeds[C0] = np.ascontiguousarray(c0, dtype=np.float32)
        names = outputs or self.output_names
        return dict(zip(names, self.session.run(names, feeds)))

    def warmup(self, runs: int) -> None:
        """Run a few representative shapes so the first real request pays no set-up cost."""
        for i in range(runs):
            t = 4 + 4 * i
            ids = np.full((1 + i, t), 1, dtype=np.int64)
            self.run(ids, np.full((1 + i,), t, dtype=np.int64))
