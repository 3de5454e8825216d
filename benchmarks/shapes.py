"""What the benchmarks share: random backbones with real shapes, and MMSA-shaped random batches.

Random weights (built in code, nothing downloaded) cost the same time and memory as real ones.
"""

from __future__ import annotations

import torch

from deepmlf.backbones.adapter import Backbone
from deepmlf.backbones.shaped import shaped_backbone
from deepmlf.data.batch import Batch

# (frames, dims) of audio and vision in the MMSA processed pickles (unaligned_50 / unaligned_39).
FEATURES = {
    "mosi": ((375, 5), (500, 20)),
    "mosei": ((500, 74), (500, 35)),
    "sims": ((400, 33), (55, 709)),
}


def gpt2_base_shaped() -> Backbone:
    """GPT-2 base: 12 layers, D=768, vocab 50257 (the `mosei-base` backbone's shape)."""
    return shaped_backbone("gpt2")


def smollm2_135m_shaped() -> Backbone:
    """SmolLM2-135M: 30 layers, D=576, 9 heads, 3 kv heads, vocab 49152, tied embeddings."""
    return shaped_backbone("smollm2-135m")


RANDOM_BACKBONES = {"gpt2-base": gpt2_base_shaped, "smollm2-135m": smollm2_135m_shaped}


def random_batch(B: int, T: int, vocab: int, *, dataset: str = "mosi", seed: int = 0) -> Batch:
    """B clips: text right-padded to T tokens, audio/vision with the dataset's frame counts and dims."""
    g = torch.Generator().manual_seed(seed)
    (la, da), (lv, dv) = FEATURES[dataset]
    text_len = torch.randint(max(1, T // 3), T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < text_len[:, None]).long()  # (B, T) right padding
    return Batch(
        input_ids=torch.randint(0, vocab, (B, T), generator=g),
        attention_mask=mask,
        audio=torch.randn(B, la, da, generator=g),
        audio_lengths=torch.randint(la // 4, la + 1, (B,), generator=g),
        vision=torch.randn(B, lv, dv, generator=g),
        vision_lengths=torch.randint(lv // 4, lv + 1, (B,), generator=g),
        labels=torch.empty(B).uniform_(-1 if dataset == "sims" else -3, 1 if dataset == "sims" else 3, generator=g),
        ids=[f"s{i}" for i in range(B)],
    )
