"""Text-only reference: the frozen LM read at the last real token, plus a linear head W_t.

The unimodal baseline of the demo: what the LM alone knows about sentiment, measured with the
same readout DeepMLF's text head uses (x_tK after the final norm), so the gap to DeepMLF is the
gain from fusion. Only W_t trains; the LM runs without autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.adapter import Backbone
from ..data.batch import Batch
from .av_encoder import labels_usable
from .heads import ScalarHead
from .state import count_parameters, load_strict, state_without


@dataclass
class TextRegressorOutput:
    y_t: Tensor  # (B,)
    loss: Tensor | None  # L1 vs the label; None for unlabelled batches
    loss_terms: dict[str, Tensor]  # {"task": L1}

    @property
    def prediction(self) -> Tensor:
        return self.y_t


class TextRegressor(nn.Module):
    def __init__(self, *, backbone: Backbone) -> None:
        super().__init__()
        backbone.freeze()
        self.backbone = backbone  # accessors only
        self.backbone_model = backbone.model.eval()
        self.head = ScalarHead(d_in=backbone.hidden_size)

    def train(self, mode: bool = True) -> "TextRegressor":
        super().train(mode)
        self.backbone_model.eval()  # frozen feature extractor
        return self

    def features(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """x_tK: (B, T) ids -> (B, D) float32 final-normed state at the last real token."""
        with torch.no_grad():
            hidden = self.backbone_model.base_model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state  # (B, T, D)
        last = (attention_mask.sum(1) - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()

    def forward(self, batch: Batch) -> TextRegressorOutput:
        y_t = self.head(self.features(batch.input_ids, batch.attention_mask))  # (B,)
        if labels_usable(batch.labels):
            task = F.l1_loss(y_t, batch.labels.to(y_t.dtype))
            return TextRegressorOutput(y_t=y_t, loss=task, loss_terms={"task": task})
        return TextRegressorOutput(y_t=y_t, loss=None, loss_terms={})

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return state_without(self, frozenset(id(t) for t in self.backbone_model.state_dict(keep_vars=True).values()))

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        load_strict(self, state, expected=self.trainable_state_dict(), what="text regressor")

    def parameter_counts(self) -> dict:
        return count_parameters({"backbone": self.backbone_model, "head": self.head})
