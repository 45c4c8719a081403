"""The G2P encoder–decoder (nn.Modules only): a bidirectional GRU encoder over characters and
a GRU decoder over phonemes with Luong (general) attention on the encoder outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from modelspec.seq2seq import SRC_PAD_ID, TGT_PAD_ID

NEG_INF = -1e9  # masked attention scores: exp() underflows to exactly 0 in float32


@dataclass(frozen=True)
class G2PConfig:
    """Architecture; stored in the checkpoint and in both graphs' metadata."""

    src_vocab_size: int
    tgt_vocab_size: int
    embedding_dim: int = 64
    encoder_hidden: int = 128  # per direction: the memory is 2 x encoder_hidden wide
    encoder_layers: int = 1
    decoder_hidden: int = 256
    dropout: float = 0.2
    cell: str = "gru"
    input_feeding: bool = False  # the previous step's attentional vector is a decoder input too

    @property
    def memory_size(self) -> int:
        """Width of one encoder output (both directions)."""
        return 2 * self.encoder_hidden

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> G2PConfig:
        """From the JSON form, ignoring unknown keys."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def length_mask(lengths: Tensor, time: int) -> Tensor:
    """[B, time] boolean: True at positions inside each row's length."""
    return torch.arange(time, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


class G2P(nn.Module):
    """Encoder, decoder step and a teacher-forced training forward sharing one set of weights.

    encode(input_ids [B,T], lengths [B]) -> memory [B,T,M] (zero past each length), h_init [1,B,H]
    step(prev_ids [B], h0 [1,B,H], memory [B,T,M], memory_lengths [B])
      -> logits [B,V], h_n [1,B,H], attention [B,T]
    forward(input_ids, lengths, dec_in [B,U]) -> logits [B,U,V]: the step applied to every
    position of dec_in (without input feeding in one GRU call, with it in a loop over U).

    Input feeding (Luong et al., 2015): the decoder GRU reads the previous step's attentional
    vector tanh(W [h; context]) beside the previous phoneme. That vector is a function of the
    previous state and the memory only, so the step recomputes it from h0: the state stays h
    alone and the step graph's inputs and outputs are the same with or without it (the first
    step feeds the vector of h_init).
    """

    def __init__(self, config: G2PConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.src_embedding = nn.Embedding(c.src_vocab_size, c.embedding_dim, padding_idx=SRC_PAD_ID)
        self.encoder = nn.GRU(
            c.embedding_dim,
            c.encoder_hidden,
            num_layers=c.encoder_layers,
            bidirectional=True,
            batch_first=True,
            dropout=c.dropout if c.encoder_layers > 1 else 0.0,
        )
        self.bridge = nn.Linear(c.memory_size, c.decoder_hidden)
        self.tgt_embedding = nn.Embedding(c.tgt_vocab_size, c.embedding_dim, padding_idx=TGT_PAD_ID)
        feed = c.decoder_hidden if c.input_feeding else 0
        self.decoder = nn.GRU(c.embedding_dim + feed, c.decoder_hidden, batch_first=True)
        self.attn = nn.Linear(c.decoder_hidden, c.memory_size, bias=False)
        self.combine = nn.Linear(c.decoder_hidden + c.memory_size, c.decoder_hidden)
        self.out = nn.Linear(c.decoder_hidden, c.tgt_vocab_size)
        self.dropout = nn.Dropout(c.dropout)

    def encode(self, input_ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """memory [B,T,M] and the decoder's first state h_init [1,B,H]."""
        c = self.config
        batch, time = input_ids.shape
        x = self.dropout(self.src_embedding(input_ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=time)
        last = h_n.view(c.encoder_layers, 2, batch, c.encoder_hidden)[-1]
        last = last.transpose(0, 1).reshape(batch, c.memory_size)
        h_init = torch.tanh(self.bridge(last)).unsqueeze(0)
        return memory, h_init

    def _mixed(self, dec: Tensor, memory: Tensor, memory_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """dec [B,U,H] -> attentional vectors tanh(W [dec; context]) [B,U,H], attention [B,U,T]."""
        scores = torch.bmm(self.attn(dec), memory.transpose(1, 2))
        mask = length_mask(memory_lengths, memory.size(1)).unsqueeze(1)
        scores = scores.masked_fill(~mask, NEG_INF)
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, memory)
        return torch.tanh(self.combine(torch.cat([dec, context], dim=-1))), weights

    def _attend(self, dec: Tensor, memory: Tensor, memory_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """dec [B,U,H] -> logits [B,U,V], attention [B,U,T]."""
        mixed, weights = self._mixed(dec, memory, memory_lengths)
        return self.out(self.dropout(mixed)), weights

    def step(
        self, prev_ids: Tensor, h0: Tensor, memory: Tensor, memory_lengths: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One decoder step; see the class docstring for shapes."""
        x = self.dropout(self.tgt_embedding(prev_ids)).unsqueeze(1)
        if self.config.input_feeding:
            feed, _ = self._mixed(h0.transpose(0, 1), memory, memory_lengths)
            x = torch.cat([x, feed], dim=-1)
        dec, h_n = self.decoder(x, h0)
        logits, weights = self._attend(dec, memory, memory_lengths)
        return logits.squeeze(1), h_n, weights.squeeze(1)

    def forward(self, input_ids: Tensor, lengths: Tensor, dec_in: Tensor) -> Tensor:
        """Teacher-forced logits [B,U,V] for decoder inputs dec_in (<s> then the target)."""
        memory, h_init = self.encode(input_ids, lengths)
        x = self.dropout(self.tgt_embedding(dec_in))
        if not self.config.input_feeding:
            dec, _ = self.decoder(x, h_init)
            logits, _ = self._attend(dec, memory, lengths)
            return logits
        # one GRU step at a time with the decoder GRU's own weights (the same equations)
        w_ih, w_hh, b_ih, b_hh = self.decoder.all_weights[0]
        h = h_init[0]
        feed = self._mixed(h.unsqueeze(1), memory, lengths)[0][:, 0]
        mixed = []
        for t in range(dec_in.size(1)):
            step_in = torch.cat([x[:, t], feed], dim=-1)
            h = torch.gru_cell(step_in, h, w_ih, w_hh, b_ih, b_hh)
            feed = self._mixed(h.unsqueeze(1), memory, lengths)[0][:, 0]
            mixed.append(feed)
        return self.out(self.dropout(torch.stack(mixed, dim=1)))


class EncoderGraph(nn.Module):
    """The encoder as the module the ONNX exporter traces."""

    def __init__(self, model: G2P) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """memory, h_init."""
        return self.model.encode(input_ids, lengths)


class StepGraph(nn.Module):
    """The decoder step as the module the ONNX exporter traces."""

    def __init__(self, model: G2P) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, prev_ids: Tensor, h0: Tensor, memory: Tensor, memory_lengths: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """logits, h_n, attention."""
        return self.model.step(prev_ids, h0, memory, memory_lengths)
