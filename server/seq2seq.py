"""A served encoder–decoder: its two onnxruntime sessions, metadata, vocabularies and checks.

The encoder and the decoder step are ordinary graphs; server/generation.py drives the step in
a loop. numpy in and out; no grpc here.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from modelspec.batch import pad_rows
from modelspec.io import IOSpec, IOSpecError
from modelspec.seq2seq import (
    ENC_INPUT_IDS,
    ENC_LENGTHS,
    ENCODER_FILE,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    EOS_ID,
    MEMORY,
    MEMORY_LENGTHS,
    METADATA_KEY,
    PREV_IDS,
    ROLE_ENCODER,
    ROLE_STEP,
    SRC_SPECIALS,
    STEP_FILE,
    STEP_H0,
    STEP_INPUTS,
    STEP_OUTPUTS,
    TGT_SPECIALS,
    Seq2SeqMetadata,
    Seq2SeqMetadataError,
)
from server.errors import InvalidArgument, ModelLoadError, load_error
from server.runtime import choose_providers

log = logging.getLogger("rnnserve.runtime")


@dataclass(frozen=True)
class GenerationLimits:
    """Bounds on one Generate request and on the running batch of a model."""

    max_steps: int = 64  # the most decoder steps a request may ask for
    default_steps: int = 40  # max_steps when a request gives none
    max_beam_size: int = 8
    max_source_chars: int = 64
    max_batch_rows: int = 256  # decoder rows one step runs at most (a beam takes beam_size)


def _graph_error(path: Path, what: str, detail: str = "") -> ModelLoadError:
    """load_error of one graph: clients read which file (encoder.onnx, step.onnx), not where."""
    exc = load_error(path, what, detail)
    exc.public = f"{path.name}: {what}"
    return exc


class Graph:
    """One ONNX graph of a seq2seq model: session, metadata, I/O spec, parity checked."""

    def __init__(self, path: Path, role: str, so: ort.SessionOptions, providers: list) -> None:
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises several unrelated types here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _graph_error(path, "not a loadable ONNX model", first) from None
        self.provider = self.session.get_providers()[0]
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise _graph_error(path, f"no '{METADATA_KEY}' metadata")
        try:
            self.meta = Seq2SeqMetadata.from_json(raw)
            self.io = IOSpec.from_dict(self.meta.io)
        except (Seq2SeqMetadataError, IOSpecError, ValueError, KeyError, TypeError) as exc:
            raise _graph_error(path, f"bad '{METADATA_KEY}' metadata", str(exc)) from None
        if self.meta.role != role:
            raise _graph_error(path, f"holds the {self.meta.role} graph, not the {role}")
        names = {i.name for i in self.session.get_inputs()}
        names |= {o.name for o in self.session.get_outputs()}
        wanted = (
            ENCODER_INPUTS + ENCODER_OUTPUTS if role == ROLE_ENCODER else STEP_INPUTS + STEP_OUTPUTS
        )
        missing = [n for n in wanted if n not in names]
        if missing:
            raise _graph_error(path, f"the graph lacks {', '.join(missing)}")
        par = self.meta.parity
        tol = float(par.get("tolerance", 1e-4))
        if not par.get("passed") or not float(par.get("max_abs_diff", np.inf)) <= tol:
            raise _graph_error(path, "no passing parity certificate; re-export it")

    def run(self, names: Sequence[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime call."""
        return list(self.session.run(list(names), feeds))


class Seq2SeqRuntime:
    """The encoder and step graphs of one model version, and the word <-> id mapping."""

    def __init__(
        self,
        folder: Path,
        *,
        device: str = "cpu",
        intra_op_threads: int = 1,
        cuda_tf32: bool = False,
    ) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers = choose_providers(device, cuda_tf32)
        self.folder = folder
        self.encoder = Graph(folder / ENCODER_FILE, ROLE_ENCODER, so, providers)
        self.step_graph = Graph(folder / STEP_FILE, ROLE_STEP, so, providers)
        meta = self.meta = self.step_graph.meta
        if (meta.source_vocab, meta.target_vocab) != (
            self.encoder.meta.source_vocab,
            self.encoder.meta.target_vocab,
        ):
            raise load_error(folder, "the encoder and step graphs' vocabularies differ")
        self.provider = self.step_graph.provider
        self.hidden = meta.hidden
        self.memory_size = meta.memory_size
        self.source_vocab = meta.source_vocab
        self.target_vocab = meta.target_vocab
        self.lowercase = bool(meta.tokenizer.get("lowercase", True))
        self._index = {c: i for i, c in enumerate(meta.source_vocab) if i >= len(SRC_SPECIALS)}
        self.eos_id = int(meta.config.get("eos_id", EOS_ID))
        self.bos_id = int(meta.config["bos_id"])
        self.never_ids = [i for i in range(len(TGT_SPECIALS)) if i != self.eos_id]

    def source_ids(self, text: str, limits: GenerationLimits) -> list[int]:
        """Character ids of one word; InvalidArgument for what the model cannot read."""
        word = text.strip()
        if not word:
            raise InvalidArgument("text is empty")
        if any(ch.isspace() for ch in word):
            raise InvalidArgument("text holds more than one word; send one word per request")
        if len(word) > limits.max_source_chars:
            raise InvalidArgument(
                f"text has {len(word)} characters; the limit is {limits.max_source_chars}"
            )
        if self.lowercase:
            word = word.lower()
        if any(ch not in self._index for ch in word):  # "Zoë" reads as "zoe", "José" as "jose"
            word = "".join(
                c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c)
            )
        bad = sorted({ch for ch in word if ch not in self._index})
        if bad:
            shown = ", ".join(repr(ch) for ch in bad[:5])
            raise InvalidArgument(f"text holds characters the model does not know: {shown}")
        if not any(ch.isalpha() for ch in word):  # "'", "---": nothing to pronounce
            raise InvalidArgument("text has no letters to pronounce")
        return [self._index[ch] for ch in word]

    def check_ids(self, ids: list[int], limits: GenerationLimits) -> list[int]:
        """Source token ids, checked against the vocabulary and the length limit."""
        if not ids:
            raise InvalidArgument("token_ids is empty")
        if len(ids) > limits.max_source_chars:
            raise InvalidArgument(
                f"token_ids has {len(ids)} ids; the limit is {limits.max_source_chars}"
            )
        n = len(self.source_vocab)
        bad = [i for i in ids if not 0 < i < n]
        if bad:
            raise InvalidArgument(f"token id {bad[0]} is outside the vocabulary [1, {n})")
        return [int(i) for i in ids]

    def target_token(self, i: int) -> str:
        """The name of an output token id."""
        return self.target_vocab[i]

    @property
    def first_output_id(self) -> int:
        """Ids below this are specials (<pad>, <s>, </s>)."""
        return len(TGT_SPECIALS)

    def encode(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """memory [B,T,M], h_init [1,B,H] and lengths [B] of rows of source ids."""
        ids, lengths = pad_rows(rows)
        memory, h = self.encoder.run(ENCODER_OUTPUTS, {ENC_INPUT_IDS: ids, ENC_LENGTHS: lengths})
        return memory, h, lengths

    def step(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """One decoder step on a batch: [logits, h_n, attention]."""
        return self.step_graph.run(STEP_OUTPUTS, feeds)

    def warmup(self, runs: int) -> None:
        """A few encoder and step calls so the first request pays no set-up cost."""
        for i in range(runs):
            rows = [[len(SRC_SPECIALS)] * (3 + i)] * (1 + i)
            memory, h, lengths = self.encode(rows)
            prev = np.full((len(rows),), self.bos_id, dtype=np.int64)
            self.step({PREV_IDS: prev, STEP_H0: h, MEMORY: memory, MEMORY_LENGTHS: lengths})
