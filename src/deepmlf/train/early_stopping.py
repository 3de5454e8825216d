"""Model selection on a validation metric and early stopping (the authors' KeyEval logic).

An epoch improves when its value beats the best so far by more than `min_delta` (1e-6, as in the
authors' trainer) in the metric's direction; training stops after `patience` epochs in a row
without improvement. A NaN value never improves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass
class EarlyStopping:
    mode: Literal["min", "max"]
    patience: int
    min_delta: float = 1e-6
    best: float | None = None  # best value so far
    best_epoch: int | None = None
    bad_epochs: int = 0  # consecutive epochs without improvement

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode={self.mode!r}: expected 'min' or 'max'")

    def improves(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; True when it is the new best."""
        if self.improves(value):
            self.best, self.best_epoch, self.bad_epochs = float(value), epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
