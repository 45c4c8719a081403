"""Tensor, axis and metadata names of the exported model, declared once."""

from typing import Final

INPUT_IDS: Final = "input_ids"
LENGTHS: Final = "lengths"
H0: Final = "h0"
C0: Final = "c0"
# Optional: per-token match features of the caller's home (modelspec/context.py), zeros if absent.
CONTEXT: Final = "context"

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

RNN: Final = "rnn"
LSTM: Final = "lstm"
GRU: Final = "gru"
CELLS: Final = (RNN, LSTM, GRU)
NONLINEARITIES: Final = ("tanh", "relu")


def has_cell_state(cell: str) -> bool:
    """Whether a cell type carries a cell state c beside h (an LSTM does)."""
    return cell == LSTM


def input_names(cell: str, context: bool = False) -> list[str]:
    """Graph input names for a cell type (with the context input or not), in graph order."""
    return (
        [INPUT_IDS, LENGTHS, H0]
        + ([C0] if has_cell_state(cell) else [])
        + ([CONTEXT] if context else [])
    )


def output_names(cell: str) -> list[str]:
    """Graph output names for a cell type, in graph order."""
    return [OUTPUTS, SLOT_LOGITS, INTENT_LOGITS, H_N] + ([C_N] if has_cell_state(cell) else [])


# The values a cell's state can take: h of tanh-bounded cells (tanh RNN, GRU, LSTM) stays in
# [-1, 1]; a relu RNN's h is never negative; an LSTM's c grows by at most 1 a step. STATE_LIMIT
# bounds what is unbounded in principle, far above anything a real utterance produces.
STATE_LIMIT: Final = 1e4


def state_range(cell: str, nonlinearity: str, name: str) -> tuple[float, float]:
    """(low, high) of the values a recurrent state input `name` (h0 or c0) can honestly hold."""
    if name == C0:
        return (-STATE_LIMIT, STATE_LIMIT)
    if cell == "rnn" and nonlinearity == "relu":
        return (0.0, STATE_LIMIT)
    return (-1.0, 1.0)
