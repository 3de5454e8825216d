"""The one batch type every model in deepmlf consumes (produced by `deepmlf.data.collate`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """A mini-batch of MMSA samples. Shapes: B batch, T text tokens, La/Lv raw audio/vision frames."""

    input_ids: torch.Tensor  # (B, T) long, right-padded to max_text_len
    attention_mask: torch.Tensor  # (B, T) long, 1 = real token, 0 = pad
    audio: torch.Tensor  # (B, La, Da) float, zero-padded after audio_lengths
    audio_lengths: torch.Tensor  # (B,) long, number of real audio frames (>= 1)
    vision: torch.Tensor  # (B, Lv, Dv) float
    vision_lengths: torch.Tensor  # (B,) long
    labels: torch.Tensor | None  # (B,) float sentiment score ([-3, 3] MOSI/MOSEI, [-1, 1] SIMS); None = unlabelled
    ids: list[str]  # sample ids, as in the pickle's `id` key
    # (B,) bool, True where the transcript was empty (text missing, deepmlf.data.missing); None = unknown.
    text_missing: torch.Tensor | None = None
    # Teacher rationales (model.rationale): (B, R) long token ids ending in eos, right-padded; the
    # mask is 1 on real tokens and all 0 for a sample without one (no rationale loss). None = none.
    rationale_ids: torch.Tensor | None = None
    rationale_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=True)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])
