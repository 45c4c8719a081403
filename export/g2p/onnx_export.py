"""The G2P model as two ONNX graphs (encoder, decoder step), their parity certificates and
metadata, packaged as one model version in the repository: ``models/g2p/<version>/``."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.g2p.data import Vocab
from export.g2p.model import G2P, EncoderGraph, StepGraph
from export.onnx_export import OPSET, ExportError, embed_metadata, io_spec
from modelspec.batch import pad_rows
from modelspec.seq2seq import (
    ATTENTION,
    BATCH_AXIS,
    BOS_ID,
    ENC_INPUT_IDS,
    ENC_LENGTHS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    EOS_ID,
    H_INIT,
    LOGITS,
    MEMORY,
    MEMORY_LENGTHS,
    METADATA_KEY,
    METADATA_VERSION,
    PREV_IDS,
    ROLE_ENCODER,
    ROLE_STEP,
    SOURCE_AXIS,
    STEP_FILE,
    STEP_H0,
    STEP_H_N,
    STEP_INPUTS,
    STEP_OUTPUTS,
    Seq2SeqMetadata,
)

TOLERANCE = 1e-4


def _export(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: tuple, axes: dict
) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,  # type: ignore[arg-type]
            input_names=list(names[0]),
            output_names=list(names[1]),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    if "GRU" not in {n.op_type for n in proto.graph.node}:
        raise ExportError("graph has no native GRU node")
    return proto


def encoder_onnx(model: G2P) -> onnx.ModelProto:
    """The encoder graph: input_ids [B,T], lengths [B] -> memory [B,T,M], h_init [1,B,H]."""
    model.eval()
    ids = torch.randint(2, model.config.src_vocab_size, (2, 5))
    lengths = torch.tensor([5, 3])  # shorter than time: the trace includes the padding path
    axes = {
        ENC_INPUT_IDS: {0: BATCH_AXIS, 1: SOURCE_AXIS},
        ENC_LENGTHS: {0: BATCH_AXIS},
        MEMORY: {0: BATCH_AXIS, 1: SOURCE_AXIS},
        H_INIT: {1: BATCH_AXIS},
    }
    return _export(EncoderGraph(model), (ids, lengths), (ENCODER_INPUTS, ENCODER_OUTPUTS), axes)


def step_onnx(model: G2P) -> onnx.ModelProto:
    """The step graph: prev_ids, h0, memory, memory_lengths -> logits, h_n, attention."""
    model.eval()
    memory, h = model.encode(
        torch.randint(2, model.config.src_vocab_size, (2, 5)), torch.tensor([5, 3])
    )
    args = (torch.tensor([BOS_ID, BOS_ID]), h.detach(), memory.detach(), torch.tensor([5, 3]))
    axes = {
        PREV_IDS: {0: BATCH_AXIS},
        STEP_H0: {1: BATCH_AXIS},
        MEMORY: {0: BATCH_AXIS, 1: SOURCE_AXIS},
        MEMORY_LENGTHS: {0: BATCH_AXIS},
        LOGITS: {0: BATCH_AXIS},
        STEP_H_N: {1: BATCH_AXIS},
        ATTENTION: {0: BATCH_AXIS, 1: SOURCE_AXIS},
    }
    return _export(StepGraph(model), args, (STEP_INPUTS, STEP_OUTPUTS), axes)


# ---------------------------------------------------------------------- parity


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def parity(
    model: G2P, enc: onnx.ModelProto, step: onnx.ModelProto, seed: int = 0
) -> dict[str, Any]:
    """onnxruntime against torch float64 on batch sizes and lengths the trace never saw, and
    every padded row again on its own; raise ExportError past TOLERANCE."""
    rng = np.random.default_rng(seed)
    ref = G2P(model.config)
    ref.load_state_dict(model.state_dict())
    ref = ref.double().eval()
    s_enc, s_step = _session(enc), _session(step)
    cases: dict[str, dict[str, float]] = {}
    worst = 0.0
    vocab_n, tgt_n = model.config.src_vocab_size, model.config.tgt_vocab_size
    for name, lens in {
        "batch1_len1": [1],
        "batch1_len12": [12],
        "batch7_mixed": [3, 9, 1, 17, 6, 6, 30],
        "batch33_mixed": list(rng.integers(1, 25, size=33)),
    }.items():
        rows = [list(rng.integers(2, vocab_n, size=int(n))) for n in lens]
        ids, lengths = pad_rows(rows)
        mem, h = s_enc.run(list(ENCODER_OUTPUTS), {ENC_INPUT_IDS: ids, ENC_LENGTHS: lengths})
        with torch.no_grad():
            t_mem, t_h = ref.encode(torch.from_numpy(ids), torch.from_numpy(lengths))
        diffs = {MEMORY: _max_diff(mem, t_mem.numpy()), H_INIT: _max_diff(h, t_h.numpy())}
        prev = rng.integers(1, tgt_n, size=len(rows)).astype(np.int64)
        h_rand = rng.uniform(-1, 1, size=h.shape).astype(np.float32)
        feeds = {PREV_IDS: prev, STEP_H0: h_rand, MEMORY: mem, MEMORY_LENGTHS: lengths}
        out = s_step.run(list(STEP_OUTPUTS), feeds)
        with torch.no_grad():
            t_out = ref.step(
                torch.from_numpy(prev),
                torch.from_numpy(h_rand).double(),
                torch.from_numpy(mem).double(),
                torch.from_numpy(lengths),
            )
        for k, a, b in zip(STEP_OUTPUTS, out, t_out, strict=True):
            diffs[k] = _max_diff(a, b.numpy())
        for r in range(len(rows)):  # each padded row against itself alone
            n = int(lengths[r])
            alone = s_step.run(
                list(STEP_OUTPUTS),
                {
                    PREV_IDS: prev[r : r + 1],
                    STEP_H0: h_rand[:, r : r + 1],
                    MEMORY: mem[r : r + 1, :n],
                    MEMORY_LENGTHS: lengths[r : r + 1],
                },
            )
            diffs["padded_vs_alone"] = max(
                diffs.get("padded_vs_alone", 0.0),
                _max_diff(alone[0], out[0][r : r + 1]),
                _max_diff(alone[1], out[1][:, r : r + 1]),
            )
        cases[name] = diffs
        worst = max(worst, *diffs.values())
    if worst > TOLERANCE:
        raise ExportError(f"parity failed: max abs diff {worst:.3g} > {TOLERANCE:g} ({cases})")
    return {"max_abs_diff": worst, "tolerance": TOLERANCE, "passed": True, "cases": cases}


# ---------------------------------------------------------------------- package


def package(
    model: G2P,
    vocab: Vocab,
    ckpt: dict[str, Any],
    out_dir: Path,
    name: str = "g2p",
    version: str = "1",
) -> dict[str, Any]:
    """Write out_dir/<name>/<version>/{encoder,step}.onnx with their metadata; return it."""
    enc, step = encoder_onnx(model), step_onnx(model)
    par = parity(model, enc, step)
    folder = out_dir / name / version
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for role, proto, fname in ((ROLE_ENCODER, enc, ENCODER_FILE), (ROLE_STEP, step, STEP_FILE)):
        path = folder / fname
        onnx.save(proto, str(path))
        meta = Seq2SeqMetadata(
            role=role,
            source_vocab=list(vocab.chars),
            target_vocab=list(vocab.phonemes),
            tokenizer={"unit": "character", "lowercase": True},
            config={
                **ckpt["config"],
                "memory_size": model.config.memory_size,
                "bos_id": BOS_ID,
                "eos_id": EOS_ID,
            },
            io=io_spec(proto).to_dict(),
            parity=par,
            metrics=ckpt.get("metrics", {}),
            training={k: v for k, v in ckpt.get("training", {}).items() if k != "history"},
            version=METADATA_VERSION,
        )
        embed_metadata(path, METADATA_KEY, meta.to_json())
        written[role] = str(path)
    return {"files": written, "parity": par}


def dump(meta: dict[str, Any]) -> str:
    """Pretty JSON."""
    return json.dumps(meta, indent=2)
