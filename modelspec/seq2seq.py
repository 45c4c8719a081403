"""Names of the encoder–decoder (seq2seq) graphs, metadata and vocabularies, declared once.

A seq2seq model is two ONNX graphs served together:

- the encoder: ``input_ids [B,T]`` (int64), ``lengths [B]`` (int64) ->
  ``memory [B,T,M]`` (float32, zero past each row's length) and ``h_init [1,B,H]``
  (the decoder's first state);
- the decoder step: ``prev_ids [B]`` (int64), ``h0 [1,B,H]``, ``memory [B,T,M]``,
  ``memory_lengths [B]`` (int64) -> ``logits [B,V]``, ``h_n [1,B,H]`` and
  ``attention [B,T]`` (the weights over the memory this step used).

The step graph alone is a 1 vs N model: given any first state and memory (one vector is a
memory of length 1), it generates a sequence token by token, fed its own previous token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from modelspec.names import H0, H_N, INPUT_IDS, LENGTHS

# -- tensors ---------------------------------------------------------------------------------
ENC_INPUT_IDS: Final = INPUT_IDS
ENC_LENGTHS: Final = LENGTHS
MEMORY: Final = "memory"
H_INIT: Final = "h_init"

PREV_IDS: Final = "prev_ids"
STEP_H0: Final = H0
MEMORY_LENGTHS: Final = "memory_lengths"
LOGITS: Final = "logits"
STEP_H_N: Final = H_N
ATTENTION: Final = "attention"

ENCODER_INPUTS: Final = (ENC_INPUT_IDS, ENC_LENGTHS)
ENCODER_OUTPUTS: Final = (MEMORY, H_INIT)
STEP_INPUTS: Final = (PREV_IDS, STEP_H0, MEMORY, MEMORY_LENGTHS)
STEP_OUTPUTS: Final = (LOGITS, STEP_H_N, ATTENTION)

BATCH_AXIS: Final = "batch"
SOURCE_AXIS: Final = "source"

# -- metadata (ONNX metadata_props key, and the JSON's keys) ---------------------------------
METADATA_KEY: Final = "rnnserve.seq2seq"
METADATA_VERSION: Final = 1
ROLE_ENCODER: Final = "encoder"
ROLE_STEP: Final = "step"
ROLES: Final = (ROLE_ENCODER, ROLE_STEP)

# -- vocabularies ----------------------------------------------------------------------------
# Source (characters): <pad>=0, <unk>=1, then the characters. Target (phonemes): <pad>=0,
# <s>=1 (fed as the first prev_ids), </s>=2 (ends a sequence), then the phonemes.
SRC_PAD: Final = "<pad>"
SRC_UNK: Final = "<unk>"
SRC_SPECIALS: Final = (SRC_PAD, SRC_UNK)
SRC_PAD_ID: Final = 0
SRC_UNK_ID: Final = 1

TGT_PAD: Final = "<pad>"
TGT_BOS: Final = "<s>"
TGT_EOS: Final = "</s>"
TGT_SPECIALS: Final = (TGT_PAD, TGT_BOS, TGT_EOS)
TGT_PAD_ID: Final = 0
BOS_ID: Final = 1
EOS_ID: Final = 2

# -- repository layout -----------------------------------------------------------------------
# models/<name>/<version>/encoder.onnx and step.onnx; the two graphs are also served as the
# ordinary models <name>.encoder and <name>.step.
ENCODER_FILE: Final = "encoder.onnx"
STEP_FILE: Final = "step.onnx"
ENCODER_SUFFIX: Final = ".encoder"
STEP_SUFFIX: Final = ".step"


class Seq2SeqMetadataError(ValueError):
    """A seq2seq graph's metadata is missing or malformed."""


REQUIRED_KEYS: Final = ("role", "source_vocab", "target_vocab", "tokenizer", "config", "io")
REQUIRED_CONFIG: Final = ("decoder_hidden", "memory_size", "bos_id", "eos_id")


@dataclass(frozen=True)
class Seq2SeqMetadata:
    """What each of the two graphs carries under METADATA_KEY: its role, both vocabularies,
    the tokenizer rules, the architecture, its I/O spec, parity, metrics and training."""

    role: str
    source_vocab: list[str]
    target_vocab: list[str]
    tokenizer: dict[str, Any]
    config: dict[str, Any]
    io: dict[str, Any]
    parity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    version: int = METADATA_VERSION

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Seq2SeqMetadata:
        """Parse and validate; raise Seq2SeqMetadataError naming what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise Seq2SeqMetadataError(f"metadata is not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise Seq2SeqMetadataError("metadata is not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        missing += [k for k in REQUIRED_CONFIG if k not in data.get("config", {})]
        if missing:
            raise Seq2SeqMetadataError(f"metadata lacks {', '.join(missing)}")
        if data.get("version") != METADATA_VERSION:
            raise Seq2SeqMetadataError(f"unsupported metadata version {data.get('version')!r}")
        if data["role"] not in ROLES:
            raise Seq2SeqMetadataError(f"role must be one of {ROLES}, not {data['role']!r}")
        meta = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        if tuple(meta.source_vocab[: len(SRC_SPECIALS)]) != SRC_SPECIALS:
            raise Seq2SeqMetadataError(f"the source vocabulary must start with {SRC_SPECIALS}")
        if tuple(meta.target_vocab[: len(TGT_SPECIALS)]) != TGT_SPECIALS:
            raise Seq2SeqMetadataError(f"the target vocabulary must start with {TGT_SPECIALS}")
        return meta

    @property
    def hidden(self) -> int:
        """Width of the decoder state."""
        return int(self.config["decoder_hidden"])

    @property
    def memory_size(self) -> int:
        """Width of one memory (encoder output) vector."""
        return int(self.config["memory_size"])
