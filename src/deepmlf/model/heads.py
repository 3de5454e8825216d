"""Model heads (paper §4.4, eq. 12-13): the task head g and the linear modality heads."""

from __future__ import annotations

from torch import Tensor, nn


class TaskHead(nn.Module):
    """g: [x̄_f ‖ x_tK ‖ z̄] -> Linear(2D+D_av -> hidden) -> BatchNorm -> ReLU -> Linear(-> 1) = y_o."""

    def __init__(self, *, d_in: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: Tensor) -> Tensor:  # (B, 2D+D_av) -> (B,)
        return self.net(features).squeeze(-1)


class ScalarHead(nn.Module):
    """A linear modality head W: (..., d_in) -> (...,). Applied per fusion token for W_f."""

    def __init__(self, *, d_in: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).squeeze(-1)


class DeepMLFHeads(nn.Module):
    """The four heads read from the LM's final-normed states and the pooled AV memory."""

    def __init__(self, *, d_model: int, d_av: int, hidden: int) -> None:
        super().__init__()
        self.task = TaskHead(d_in=2 * d_model + d_av, hidden=hidden)  # g
        self.text = ScalarHead(d_in=d_model)  # W_t on x_tK
        self.av = ScalarHead(d_in=d_av)  # W_av on z̄
        self.fusion = ScalarHead(d_in=d_model)  # W_f on each fusion token
