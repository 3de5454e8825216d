"""The multimodal LM: a frozen HF decoder with fusion tokens and an MM block after chosen layers.

We wrap decoder layers (open_flamingo's idea) so HF keeps doing positions, masks and attention
kernels, but without its pitfalls:
  * no runtime class swapping: `layers[i]` is replaced by a `DecoderLayerWithMM` that owns the
    original layer and the MM block, each registered exactly once;
  * the AV memory reaches the wrappers through `AVMemory.hold(...)`, a context manager that
    always clears it, so no conditioning state outlives a forward pass;
  * newer HF layers return a tensor, older ones a tuple: the wrapper accepts both.

Shapes: B batch, T text tokens, K fusion tokens, S AV steps, D LM width, D_av AV width.
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor, nn

from ..backbones.adapter import Backbone
from ..errors import BackboneError
from .augment import EmbeddingAugment
from .mm_block import MMBlock


class AVMemory:
    """The AV memory (Z, its mask, T) that MM blocks read during one forward pass. Not a Module."""

    def __init__(self) -> None:
        self._held: tuple[Tensor, Tensor, int] | None = None

    @contextmanager
    def hold(self, z: Tensor, z_mask: Tensor, *, n_text: int) -> Iterator[None]:
        if self._held is not None:
            raise RuntimeError("AVMemory is already holding a memory (nested multimodal forward)")
        self._held = (z, z_mask, n_text)
        try:
            yield
        finally:
            self._held = None

    def get(self) -> tuple[Tensor, Tensor, int]:
        if self._held is None:
            raise RuntimeError(
                "an MM block ran without AV memory: call MultimodalLM.forward, not the wrapped HF model directly"
            )
        return self._held


class DecoderLayerWithMM(nn.Module):
    """A frozen decoder layer followed by its MM block."""

    def __init__(self, *, layer: nn.Module, mm_block: MMBlock, memory: AVMemory) -> None:
        super().__init__()
        self.layer = layer
        self.mm_block = mm_block
        self.memory = memory

    def forward(self, hidden_states: Tensor, *args, **kwargs):
        out = self.layer(hidden_states, *args, **kwargs)
        h = out[0] if isinstance(out, tuple) else out  # (B, T+K, D), backbone dtype
        z, z_mask, n_text = self.memory.get()
        # The trainable block runs in float32 even over a bf16 backbone; the residual stream
        # goes back to the backbone's dtype.
        h_new = self.mm_block(h.float(), z, z_mask, n_text=n_text).to(h.dtype)
        return (h_new, *out[1:]) if isinstance(out, tuple) else h_new


def ensure_unwrapped(backbone: Backbone) -> None:
    """A backbone carries one set of MM blocks: building a second model on it is an error."""
    if any(isinstance(layer, DecoderLayerWithMM) for layer in backbone.layers):
        raise BackboneError(f"backbone {backbone.name!r} is already wrapped; load a fresh copy for a new model")


@dataclass
class MultimodalLMOutput:
    text_hidden: Tensor  # (B, T, D) float32, after the LM's final norm
    fusion_hidden: Tensor  # (B, K, D) float32, after the LM's final norm


class MultimodalLM(nn.Module):
    """Frozen backbone + fusion tokens (eq. 7) + MM blocks after the layers in `mm_blocks`.

    Takes ownership of `backbone.model`: its layer list is rewired in place, so a backbone is
    given to one MultimodalLM only. The backbone's own modules stay in eval mode (no dropout):
    it is a fixed feature extractor, and that keeps "closed gates == the frozen LM" exact.
    """

    def __init__(
        self, *, backbone: Backbone, mm_blocks: dict[int, MMBlock], n_fusion: int, augment: EmbeddingAugment
    ) -> None:
        super().__init__()
        ensure_unwrapped(backbone)
        layers = backbone.layers
        if any(p.requires_grad for p in backbone.model.parameters()):
            raise BackboneError("freeze the backbone (Backbone.freeze()) before wrapping it")
        self.backbone = backbone  # plain dataclass: accessors only, not registered
        self.backbone_model = backbone.model
        # The backbone's own modules, captured before wrapping: what checkpoints leave out and
        # what train() keeps in eval mode. Modules, not tensors: `.to(device)` keeps modules.
        self._frozen_modules = tuple(backbone.model.modules())
        self.memory = AVMemory()
        for i, block in sorted(mm_blocks.items()):
            layers[i] = DecoderLayerWithMM(layer=layers[i], mm_block=block, memory=self.memory)
        self.mm_layers = sorted(mm_blocks)
        D = backbone.hidden_size
        self.fusion_tokens = nn.Parameter(torch.randn(n_fusion, D) * 0.02)  # N(0, 0.02), float32
        self.augment = augment
        self.train(True)  # nn.Module's default mode, with the backbone held in eval

    # ------------------------------------------------------------------ structure
    def mm_blocks(self) -> list[tuple[int, MMBlock]]:
        """(layer index, MM block) pairs in layer order (the blocks live inside the wrappers)."""
        return [(i, self.backbone.layers[i].mm_block) for i in self.mm_layers]

    def frozen_tensors(self) -> list[Tensor]:
        """The backbone's own parameters and buffers (each module's direct ones: no MM block)."""
        own = (itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False)) for m in self._frozen_modules)
        return [t for tensors in own for t in tensors]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for m in self._frozen_modules for p in m.parameters(recurse=False)]

    def mm_parameters(self) -> list[nn.Parameter]:
        return [p for _, block in self.mm_blocks() for p in block.parameters()]

    def train(self, mode: bool = True) -> "MultimodalLM":
        super().train(mode)
        for m in self._frozen_modules:
            m.training = False  # non-recursive: the MM blocks inside the wrappers follow `mode`
        return self

    @property
    def n_fusion(self) -> int:
        return self.fusion_tokens.shape[0]

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: Tensor, attention_mask: Tensor, z: Tensor, z_mask: Tensor) -> MultimodalLMOutput:
        # input_ids, attention_mask: (B, T); z: (B, S, D_av) normed AV memory; z_mask: (B, S)
        B, T = input_ids.shape
        text_mask = attention_mask.bool()
        x_t = self.backbone.embed_tokens(input_ids)  # (B, T, D), frozen
        x_t = self.augment(x_t, text_mask)  # training only
        x_f = self.fusion_tokens.to(x_t.dtype).expand(B, -1, -1)  # (B, K, D)
        h0 = torch.cat([x_t, x_f], dim=1)  # (B, T+K, D), eq. 7
        full_mask = torch.cat([attention_mask.long(), attention_mask.new_ones(B, self.n_fusion).long()], dim=1)
        # Fusion tokens take positions T..T+K-1 after the padded text (authors' layout).
        position_ids = torch.arange(T + self.n_fusion, device=input_ids.device)[None, :].expand(B, -1)
        with self.memory.hold(z.float(), z_mask, n_text=T):
            hidden = self.backbone_model.base_model(
                inputs_embeds=h0, attention_mask=full_mask, position_ids=position_ids, use_cache=False
            ).last_hidden_state  # (B, T+K, D), after the final norm
        hidden = hidden.float()
        return MultimodalLMOutput(text_hidden=hidden[:, :T], fusion_hidden=hidden[:, T:])

    def lm_logits(self, text_hidden: Tensor) -> Tensor:
        """Next-token logits on the text positions only (B, T, D) -> (B, T, V) float32."""
        head = self.backbone.lm_head
        B, T, D = text_hidden.shape
        # Flattened and contiguous: a strided (B, T, D) slice would make linear fall back to a
        # batched matmul against a broadcast copy of the (V, D) weight.
        x = text_hidden.to(head.weight.dtype).reshape(B * T, D).contiguous()
        return head(x).float().view(B, T, -1)
