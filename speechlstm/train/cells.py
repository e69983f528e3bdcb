"""Recurrent stacks: (B, T, input) -> (B, T, directions * hidden).

`lstm` is PyTorch's fused nn.LSTM (cuDNN on GPU). The other cells are written
from their equations, one small module each. Every one batches its input
projection over all time steps (one matmul for the whole sequence) so that only
the recurrence, which cannot be parallelised, runs in the Python loop:

    lstm      i, f, o = σ(W x_t + U h_{t-1} + b),  g = tanh(W_g x_t + U_g h_{t-1} + b_g)
              C_t = f ⊙ C_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(C_t)
    peephole  as lstm, but i and f also see V ⊙ C_{t-1} and o sees V_o ⊙ C_t
    coupled   as lstm with f = 1 - i (forget exactly where new content is written)
    gru       r, z = σ(W x_t + U h_{t-1} + b),  n = tanh(W_n x_t + r ⊙ (U_n h_{t-1} + b_n))
              h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    rnn       h_t = tanh(W x_t + U h_{t-1} + b)

Gate order inside the stacked weights follows PyTorch (lstm/peephole: i, f, g,
o; gru: r, z, n), so `EquationLSTM` takes nn.LSTM's weights unchanged: a test
does exactly that and checks that the outputs are identical. The ONNX side
(`onnx_rnn.py`) reorders gates to the operators' conventions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CELLS as CELL_NAMES


class BiLSTM(nn.Module):
    """The fused nn.LSTM (cuDNN on GPU); exports to the ONNX LSTM operator."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool = True,
    ):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return out

    def direction_weights(self, layer: int, direction: int) -> dict[str, torch.Tensor]:
        """The same names `CellDirection` uses, so the ONNX builder treats both alike."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return {
            name: getattr(self.lstm, f"{name}{suffix}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        }


class CellDirection(nn.Module):
    """One direction of one layer: the input projection, then the recurrence.

    Subclasses define `step(xp_t, hp, state) -> (h, state)` for one time step,
    where xp_t = W x_t + b_ih and hp = U h_{t-1} + b_hh (all gates stacked).
    """

    gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        g, h = self.gates * hidden_size, hidden_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, h))
        self.bias_ih = nn.Parameter(torch.empty(g))
        self.bias_hh = nn.Parameter(torch.empty(g))
        # PyTorch's recurrent initialisation, so every cell starts alike.
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return (zeros,)

    def step(self, xp_t, hp, state):
        raise NotImplementedError

    def hidden(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return state[0]

    def forward(self, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """(B, T, input) -> (B, T, hidden); `reverse` runs from the last step to the first."""
        xp = F.linear(x, self.weight_ih, self.bias_ih)  # every time step in one matmul
        state = self.initial_state(x)
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        out = [None] * x.shape[1]
        for t in steps:
            hp = F.linear(self.hidden(state), self.weight_hh, self.bias_hh)
            out[t], state = self.step(xp[:, t], hp, state)
        return torch.stack(out, dim=1)


class EquationLSTM(CellDirection):
    """The standard LSTM cell written out; `peephole=True` adds the V ⊙ C terms."""

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, peephole: bool = False):
        super().__init__(input_size, hidden_size)
        self.peephole = peephole
        if peephole:
            # V_i, V_f, V_o: diagonal (elementwise) weights on the cell state.
            bound = 1.0 / math.sqrt(hidden_size)
            self.peep = nn.Parameter(torch.empty(3, hidden_size).uniform_(-bound, bound))

    def initial_state(self, x):
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return zeros, zeros

    def step(self, xp_t, hp, state):
        h, c = state
        i, f, g, o = (xp_t + hp).chunk(4, dim=-1)
        if self.peephole:
            i = i + self.peep[0] * c  # gates look at C_{t-1} ...
            f = f + self.peep[1] * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole:
            o = o + self.peep[2] * c  # ... and the output gate at C_t
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class CoupledLSTM(CellDirection):
    """LSTM with the forget gate tied to the input gate: f = 1 - i. Gates i, g, o."""

    gates = 3

    def initial_state(self, x):
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return zeros, zeros

    def step(self, xp_t, hp, state):
        h, c = state
        i, g, o = (xp_t + hp).chunk(3, dim=-1)
        i = torch.sigmoid(i)
        c = c + i * (torch.tanh(g) - c)  # = (1 - i) ⊙ C + i ⊙ g, one op fewer
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class EquationGRU(CellDirection):
    """GRU: update gate z merges forget and input; no separate cell state. Gates r, z, n."""

    gates = 3

    def step(self, xp_t, hp, state):
        (h,) = state
        xr, xz, xn = xp_t.chunk(3, dim=-1)
        hr, hz, hn = hp.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)  # reset applied after U_n h (PyTorch's and cuDNN's form)
        h = n + z * (h - n)  # = (1 - z) ⊙ n + z ⊙ h
        return h, (h,)


class EquationRNN(CellDirection):
    """The plain tanh RNN: the baseline LSTM was invented to beat."""

    gates = 1

    def step(self, xp_t, hp, state):
        h = torch.tanh(xp_t + hp)
        return h, (h,)


def make_direction(cell: str, input_size: int, hidden_size: int) -> CellDirection:
    if cell in ("lstm", "peephole"):
        return EquationLSTM(input_size, hidden_size, peephole=cell == "peephole")
    if cell == "coupled":
        return CoupledLSTM(input_size, hidden_size)
    if cell == "gru":
        return EquationGRU(input_size, hidden_size)
    if cell == "rnn":
        return EquationRNN(input_size, hidden_size)
    raise ValueError(f"unknown cell {cell!r}; choose from {', '.join(CELL_NAMES)}")


class EquationStack(nn.Module):
    """Stacked (bi)directional layers of one equation cell, dropout between layers."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool = True,
    ):
        super().__init__()
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size * self.directions
            self.layers.append(
                nn.ModuleList(
                    make_direction(cell, size, hidden_size) for _ in range(self.directions)
                )
            )
        self.dropout = nn.Dropout(dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, directions in enumerate(self.layers):
            if index:
                x = self.dropout(x)
            outs = [d(x, reverse=bool(k)) for k, d in enumerate(directions)]
            x = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]
        return x

    def direction_weights(self, layer: int, direction: int) -> dict[str, torch.Tensor]:
        d = self.layers[layer][direction]
        weights = {
            "weight_ih": d.weight_ih,
            "weight_hh": d.weight_hh,
            "bias_ih": d.bias_ih,
            "bias_hh": d.bias_hh,
        }
        if getattr(d, "peephole", False):
            weights["peep"] = d.peep
        return weights


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    bidirectional: bool = True,
) -> nn.Module:
    """`lstm` -> fused nn.LSTM; any other cell -> its equation module."""
    if cell == "lstm":
        return BiLSTM(input_size, hidden_size, num_layers, dropout, bidirectional)
    if cell not in CELL_NAMES:
        raise ValueError(f"model.cell={cell!r} is not available; choose from {CELL_NAMES}")
    return EquationStack(cell, input_size, hidden_size, num_layers, dropout, bidirectional)
