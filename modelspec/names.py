"""Tensor, axis and metadata names of the exported model, declared once."""

from typing import Final

INPUT_IDS: Final = "input_ids"
LENGTHS: Final = "lengths"
H0: Final = "h0"
C0: Final = "c0"

OUTPUTS: Final = "outputs"
SLOT_LOGITS: Final = "slot_logits"
INTENT_LOGITS: Final = "intent_logits"
H_N: Final = "h_n"
C_N: Final = "c_n"

BATCH_AXIS: Final = "batch"
TIME_AXIS: Final = "time"

METADATA_KEY: Final = "rnnserve"
METADATA_VERSION: Final = 1

PAD: Final = "<pad>"
UNK: Final = "<unk>"
NUM: Final = "<num>"
SPECIAL_TOKENS: Final = (PAD, UNK, NUM)
PAD_ID: Final = 0
UNK_ID: Final = 1

OUTSIDE_TAG: Final = "O"

CELLS: Final = ("rnn", "lstm", "gru")
NONLINEARITIES: Final = ("tanh", "relu")


def input_names(cell: str) -> list[str]:
    """Graph input names for a cell type, in graph order."""
    return [INPUT_IDS, LENGTHS, H0] + ([C0] if cell == "lstm" else [])


def output_names(cell: str) -> list[str]:
    """Graph output names for a cell type, in graph order."""
    return [OUTPUTS, SLOT_LOGITS, INTENT_LOGITS, H_N] + ([C_N] if cell == "lstm" else [])
