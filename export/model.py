"""The joint intent + slot recurrent network (the nn.Module only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from modelspec.names import CELLS, GRU, LSTM, NONLINEARITIES, PAD_ID, RNN, has_cell_state


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the network; stored in the checkpoint and in the ONNX metadata."""

    vocab_size: int
    num_intents: int
    num_slots: int
    cell: str = "gru"
    nonlinearity: str = "tanh"
    bidirectional: bool = True
    num_layers: int = 1
    embedding_dim: int = 64
    hidden_size: int = 128
    dropout: float = 0.2
    context_dim: int = 0  # width of the optional context input (0: the model takes none)
    # A context-free twin of the same architecture answers the rows whose context features
    # are all zero (models with a context input only): export/fallback.py.
    fallback: bool = False

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, not {self.cell!r}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}")
        if (
            min(
                self.vocab_size,
                self.num_intents,
                self.num_slots,
                self.num_layers,
                self.embedding_dim,
                self.hidden_size,
            )
            < 1
        ):
            raise ValueError("sizes must be positive")
        if self.fallback and not (self.context_dim and self.bidirectional):
            # A unidirectional model's state carries over chunks, and a chunk's rows may
            # change network between chunks: only whole-utterance models take a fallback.
            raise ValueError("a fallback needs a bidirectional model with a context input")

    @property
    def num_directions(self) -> int:
        """1, or 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    @property
    def state_shape(self) -> tuple[int, int]:
        """(layers x directions, hidden): the state shape without its batch axis."""
        return (self.num_layers * self.num_directions, self.hidden_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """From the JSON form, ignoring unknown keys."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class IntentSlotRNN(nn.Module):
    """Embedding -> RNN/LSTM/GRU -> per-step slot logits and intent logits from h_n.

    forward(input_ids [B,T], lengths [B], h0 [L*D, B or 1, H], c0 (LSTM only),
            context [B or 1, T or 1, C] (models with context_dim C only; None means zeros))
      -> outputs [B,T,D*H], slot_logits [B,T,S], intent_logits [B,I], h_n [L*D,B,H] (, c_n)

    Rows are packed by `lengths`, so each row's results equal that row run alone: the
    forward direction stops at the row's last token and the reverse direction starts there.
    Positions past a row's length have zero `outputs`. A state with batch 1 is broadcast.
    The context features enter through a bias-free projection added to the embeddings, so
    zero features leave the network exactly as it is without them.

    With `config.fallback`, the submodule `fallback` (the same architecture without a context
    input, trained without homes) answers every row whose context features are zero over its
    length, and this network, its intent logits moved by the buffer `context_shift` (so that
    the pair's no-intent threshold decides its rows as its own threshold did), answers the
    others. h0 seeds
    both; each output row, h_n included, is the answering network's.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=PAD_ID)
        rnn_cls = {RNN: nn.RNN, LSTM: nn.LSTM, GRU: nn.GRU}[c.cell]
        extra = {"nonlinearity": c.nonlinearity} if c.cell == "rnn" else {}
        self.rnn = rnn_cls(
            c.embedding_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            bidirectional=c.bidirectional,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
            **extra,
        )
        self.dropout = nn.Dropout(c.dropout)
        self.context_proj = (
            nn.Linear(c.context_dim, c.embedding_dim, bias=False) if c.context_dim else None
        )
        width = c.num_directions * c.hidden_size
        self.slot_head = nn.Linear(width, c.num_slots)
        self.intent_head = nn.Linear(width, c.num_intents)
        self.fallback = (
            IntentSlotRNN(replace(c, context_dim=0, fallback=False)) if c.fallback else None
        )
        if c.fallback:
            self.register_buffer("context_shift", torch.zeros(()))

    def zero_state(self, batch: int = 1) -> Tensor:
        """A zero initial state for `batch` rows."""
        ld, h = self.config.state_shape
        return torch.zeros(ld, batch, h)

    def forward(
        self,
        input_ids: Tensor,
        lengths: Tensor,
        h0: Tensor,
        c0: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """Run the network; see the class docstring for shapes."""
        if self.fallback is None:
            return self._run(input_ids, lengths, h0, c0, context)
        plain = self.plain_answer(input_ids, lengths, h0, c0)
        if context is None:
            return plain
        batch, time = input_ids.shape
        context = context.expand(batch, time, -1)
        own = self.context_answer(input_ids, lengths, h0, c0, context)
        has = self.has_context(lengths, context)
        per_row = (has.view(batch, 1, 1), has.view(batch, 1, 1), has.view(batch, 1))
        states = tuple(has.view(1, batch, 1) for _ in own[3:])
        return tuple(
            torch.where(m, a, b) for m, a, b in zip(per_row + states, own, plain, strict=True)
        )

    @staticmethod
    def has_context(lengths: Tensor, context: Tensor) -> Tensor:
        """[B] bool: whether a row has any nonzero context feature within its length."""
        steps = torch.arange(context.shape[1], device=context.device).unsqueeze(0)
        inside = (steps < lengths.unsqueeze(1)).unsqueeze(2)
        return ((context != 0) & inside).flatten(1).any(1)

    def plain_answer(
        self, input_ids: Tensor, lengths: Tensor, h0: Tensor, c0: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        """Every row answered by the fallback network (models with a fallback only)."""
        assert self.fallback is not None
        return self.fallback(input_ids, lengths, h0, c0)

    def context_answer(
        self,
        input_ids: Tensor,
        lengths: Tensor,
        h0: Tensor,
        c0: Tensor | None,
        context: Tensor | None,
    ) -> tuple[Tensor, ...]:
        """Every row answered by the context network, its intent logits moved by
        `context_shift` (models with a fallback only)."""
        own = self._run(input_ids, lengths, h0, c0, context)
        shift = self.get_buffer("context_shift")
        return (own[0], own[1], own[2] + shift, *own[3:])

    def _run(
        self,
        input_ids: Tensor,
        lengths: Tensor,
        h0: Tensor,
        c0: Tensor | None,
        context: Tensor | None,
    ) -> tuple[Tensor, ...]:
        c = self.config
        batch, time = input_ids.shape
        x = self.embedding(input_ids)
        if self.context_proj is not None and context is not None:
            x = x + self.context_proj(context)
        x = self.dropout(x)
        h0 = h0.expand(-1, batch, -1).contiguous()
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if has_cell_state(c.cell):
            if c0 is None:
                raise ValueError("an LSTM needs c0")
            c0 = c0.expand(-1, batch, -1).contiguous()
            out_packed, (h_n, c_n) = self.rnn(packed, (h0, c0))
        else:
            out_packed, h_n = self.rnn(packed, h0)
            c_n = None
        outputs, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=time)
        feats = self.dropout(outputs)
        last = h_n.view(c.num_layers, c.num_directions, batch, c.hidden_size)[-1]
        last = last.transpose(0, 1).reshape(batch, c.num_directions * c.hidden_size)
        result = (outputs, self.slot_head(feats), self.intent_head(self.dropout(last)), h_n)
        return result + ((c_n,) if c_n is not None else ())


class LogitMean(IntentSlotRNN):
    """Several trained networks of one architecture answering as one: the mean of their slot
    and intent logits (`outputs` and the states are the first's). A distillation teacher."""

    def __init__(self, models: list[IntentSlotRNN]) -> None:
        nn.Module.__init__(self)
        if len({m.config for m in models}) != 1:
            raise ValueError("the networks must share one architecture")
        self.config = models[0].config
        self.members = nn.ModuleList(models)

    def forward(
        self,
        input_ids: Tensor,
        lengths: Tensor,
        h0: Tensor,
        c0: Tensor | None = None,
        context: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """As IntentSlotRNN.forward."""
        outs = [m(input_ids, lengths, h0, c0, context) for m in self.members]
        slots, intents = (torch.stack([o[i] for o in outs]).mean(0) for i in (1, 2))
        return (outs[0][0], slots, intents, *outs[0][3:])
