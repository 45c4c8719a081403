"""The model's I/O contract: each tensor's name, dtype and shape, as the metadata's `io` holds it.

The exporter writes it from the traced graph; the server reads it back and validates requests
against it. Shapes hold ints for fixed axes and axis names (`batch`, `time`) for dynamic ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from modelspec.names import C0, CONTEXT, H0, LENGTHS

# Element types by numpy name, with the KServe v2 / Triton name of each.
DATATYPE_NAMES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
# What an input of each dtype accepts from a caller (cast to the model's dtype after the check).
ACCEPTED_DTYPES = {"int64": ("int64", "int32"), "float32": ("float32",)}

# Inputs a caller may leave out: `lengths` means every row is full length, a state or the
# context input means zeros.
CALLER_OPTIONAL = (LENGTHS, H0, C0, CONTEXT)


class IOSpecError(ValueError):
    """The metadata's `io` is missing or malformed."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype name and shape (ints or axis names) of a graph input or output."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    optional: bool = False

    @property
    def dims(self) -> list[int]:
        """The shape with -1 for every dynamic axis (the v2 protocol's form)."""
        return [d if isinstance(d, int) else -1 for d in self.shape]

    @property
    def rank(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        """Parse one entry of the metadata's `io`."""
        try:
            shape = tuple(d if isinstance(d, str) else int(d) for d in data["shape"])
            return cls(str(data["name"]), str(data["dtype"]), shape, bool(data.get("optional")))
        except (KeyError, TypeError, ValueError) as exc:
            raise IOSpecError(f"bad tensor entry in io ({exc})") from None


@dataclass(frozen=True)
class IOSpec:
    """The graph's inputs and outputs, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the metadata's `io`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IOSpec:
        """Parse the metadata's `io`; IOSpecError names what is wrong."""
        if not isinstance(data, Mapping) or "inputs" not in data or "outputs" not in data:
            raise IOSpecError("metadata lacks io inputs and outputs")
        return cls(
            tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
            int(data.get("opset", 0)),
        )

    @property
    def input_names(self) -> list[str]:
        """Input names in graph order."""
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Output names in graph order."""
        return [t.name for t in self.outputs]

    def served(self) -> IOSpec:
        """The contract as callers see it: the inputs of CALLER_OPTIONAL may be omitted."""
        inputs = tuple(
            TensorSpec(t.name, t.dtype, t.shape, t.optional or t.name in CALLER_OPTIONAL)
            for t in self.inputs
        )
        return IOSpec(inputs, self.outputs, self.opset)


def by_name(specs: Sequence[TensorSpec]) -> dict[str, TensorSpec]:
    """Specs keyed by tensor name."""
    return {t.name: t for t in specs}
