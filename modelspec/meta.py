"""The JSON that travels in the ONNX file's metadata_props under key `rnnserve`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelspec.calibration import UnknownScore, score_name
from modelspec.names import METADATA_VERSION, OUTSIDE_TAG
from modelspec.tokenizer import Tokenizer, TokenizerRules

# `metrics` and `parity` may be absent: the server decides whether to serve such a model.
REQUIRED_KEYS = ("vocab", "tokenizer", "intents", "slots", "config")


class MetadataError(ValueError):
    """The model file's metadata is missing or malformed."""


@dataclass(frozen=True)
class ModelMetadata:
    """Vocabulary, tokenizer rules, labels, architecture, metrics and parity of a model."""

    vocab: list[str]
    tokenizer: dict[str, Any]
    intents: list[str]
    slots: list[str]  # BIO tags, in slot_logits order
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # {"threshold": t, "score": ..., "method": ..., "target_frr": ..., ...}: an utterance whose
    # score (modelspec/calibration.py; max_softmax when absent) is below t is "no intent"
    calibration: dict[str, Any] = field(default_factory=dict)
    # {"input": tensor name, "features": [...], "matcher": n} when the model takes a context
    context: dict[str, Any] = field(default_factory=dict)
    # canonical-value tables (modelspec/values.py); empty: slots get no canonical values
    values: dict[str, Any] = field(default_factory=dict)
    version: int = METADATA_VERSION

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse and validate; raise MetadataError naming what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"metadata is not JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise MetadataError("metadata is not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise MetadataError(f"metadata lacks {', '.join(missing)}")
        if data.get("version") != METADATA_VERSION:
            raise MetadataError(f"unsupported metadata version {data.get('version')!r}")
        known = cls.__dataclass_fields__
        meta = cls(**{k: v for k, v in data.items() if k in known})
        if not meta.slots or meta.slots[0] != OUTSIDE_TAG:
            raise MetadataError(f"slot tags must start with {OUTSIDE_TAG!r}")
        try:
            score_name(meta.calibration)
        except UnknownScore as exc:
            raise MetadataError(str(exc)) from None
        return meta

    def make_tokenizer(self) -> Tokenizer:
        """The tokenizer this model was trained with."""
        return Tokenizer(self.vocab, TokenizerRules.from_dict(self.tokenizer))

    @property
    def cell(self) -> str:
        """rnn, lstm or gru."""
        return str(self.config["cell"])

    @property
    def state_shape(self) -> tuple[int, int]:
        """(layers x directions, hidden)."""
        d = 2 if self.config["bidirectional"] else 1
        return (int(self.config["num_layers"]) * d, int(self.config["hidden_size"]))
