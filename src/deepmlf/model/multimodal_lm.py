"""The multimodal LM: a frozen HF decoder with fusion tokens and an MM block after chosen layers.

We wrap decoder layers (open_flamingo's idea) so HF keeps doing positions, masks and attention
kernels, but without its pitfalls:
  * no runtime class swapping: `layers[i]` is replaced by a `DecoderLayerWithMM` that owns the
    original layer and the MM block, each registered exactly once;
  * the AV memory reaches the wrappers through `AVMemory.hold(...)`, a context manager that
    always clears it, so no conditioning state outlives a forward pass;
  * newer HF layers return a tensor, older ones a tuple: the wrapper accepts both.

Training runs the frozen layers before the first MM block in two parts (`_prefix_split`): the
text tokens under no_grad, filling a KV cache, then the K fusion tokens with gradients, reading
that cache. Text tokens never attend to the fusion tokens behind them (causal mask), so this is
the same computation as one pass over T+K tokens, but autograd keeps the prefix graph for K
tokens instead of T+K (20-33% less time per optimiser step on SmolLM2-135M with MM blocks
after layers 25-29, fp32 on CPU; benchmarks/RESULTS.md). Evaluation (no gradients) keeps the single pass.
Layers before the first MM block are wrapped as `FrozenPrefixLayer`s so the final pass can
skip them and start from the cached output (`PrefixControl`'s "replay").

Shapes: B batch, T text tokens, K fusion tokens, S AV steps, D LM width, D_av AV width.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache
from transformers.cache_utils import Cache

from ..backbones.adapter import Backbone
from ..errors import BackboneError
from .augment import EmbeddingAugment
from .mm_block import MMBlock
from .packing import TokenPacking
from .perf_switches import resolve_autocast
from .prefix_cache import BoundedCache, PrefixCache, PrefixEntry, entry_bytes, tensor_bytes


class AVMemory:
    """The AV memory (Z, its mask, T) that MM blocks read during one forward pass. Not a Module."""

    def __init__(self) -> None:
        self._held: tuple[Tensor, Tensor, int] | None = None
        self.n_suffix = 0  # trailing prompt/rationale tokens of the pass (model.rationale); 0 = none
        self.suffix_ffw = False  # model.rationale.suffix_ffw: the MM blocks' FFW also updates the suffix
        # model.rationale.readout: fusion. MM layer index -> the fusion tokens' states (B, K, D) of that
        # layer (after its MM block): written by a pass that runs the fusion tokens, read by the
        # suffix of the same pass, and by a decoding step (given back to `hold`), which runs none.
        self.fusion_states: dict[int, Tensor] = {}

    @contextmanager
    def hold(self, z: Tensor, z_mask: Tensor, *, n_text: int, n_suffix: int = 0,
             fusion_states: dict[int, Tensor] | None = None) -> Iterator[dict[int, Tensor]]:
        """Yields the per-layer fusion states the pass fills (or `fusion_states`, for a decoding step)."""
        if self._held is not None:
            raise RuntimeError("AVMemory is already holding a memory (nested multimodal forward)")
        self._held = (z, z_mask, n_text)
        self.n_suffix = n_suffix
        self.fusion_states = {} if fusion_states is None else fusion_states
        try:
            yield self.fusion_states
        finally:
            self._held = None
            self.n_suffix = 0
            self.fusion_states = {}

    def get(self) -> tuple[Tensor, Tensor, int]:
        if self._held is None:
            raise RuntimeError(
                "an MM block ran without AV memory: call MultimodalLM.forward, not the wrapped HF model directly"
            )
        return self._held


class _PrefixDone(Exception):
    """Raised by the first MM layer to end a prefix pass; carries that layer's output (pre-MM)."""

    def __init__(self, hidden: Tensor) -> None:
        super().__init__()
        self.hidden = hidden


DEFAULT_CACHE_BYTES = 4096 * 2**20  # model.text_cache_mb's default


class TextStateCache(BoundedCache):
    """The frozen LM's text states of each transcript, kept across epochs (`model.text_cache`).

    Valid only when nothing trainable touches the text tokens: every MM block queries with the
    fusion tokens only and its FFW (if any) acts on the fusion tokens only (`model.ffw_tokens:
    fusion`), the text embeddings are not augmented and the backbone's dropout is off. Then a
    text token's states at every layer are the frozen LM's, a function of the transcript alone:
    computed once, the per-layer keys/values (what the fusion tokens attend to) and the final
    hidden states are reused by every later epoch and evaluation. Keyed by the padded token ids.
    Per sample it holds 2 · layers · T · kv_width + T · D floats (SmolLM2-135M, T = 16: ~0.8 MB).
    Bounded (`model.text_cache_mb`, for the text entries and again for the fusion states): past the
    budget a transcript is recomputed, not stored (BoundedCache), so a large corpus costs time, not memory.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        # key -> (((keys, values) per layer, each (kv_heads, T, head_dim)), final text states (T, D))
        super().__init__(max_bytes, size=entry_bytes)
        # Frozen fusion tokens (model.fusion_trainable=false): (first MM layer, fusion-token digest,
        # transcript key) -> the fusion tokens' output (K, D) of the decoder layer under the first MM block.
        self.fusion_states = BoundedCache(max_bytes, size=tensor_bytes)

    @staticmethod
    def keys_of(input_ids: Tensor, attention_mask: Tensor) -> list[bytes]:
        """One key per row: the token ids with pads marked, so equal transcripts share an entry."""
        ids = input_ids.masked_fill(attention_mask == 0, -1).long().cpu()
        return [row.numpy().tobytes() for row in ids]

    def put(self, key: bytes, kv: tuple[tuple[Tensor, Tensor], ...], hidden: Tensor) -> None:
        self.admit(key, (kv, hidden))


class SuffixStateCache(BoundedCache):
    """The frozen states of [fusion ‖ prompt ‖ rationale] at the first MM layer (`model.rationale.prefix_cache`).

    Under teacher forcing the prompt and rationale are fixed token ids, and with
    `model.fusion_trainable: false` nothing below the first MM block trains (the text cache's
    conditions cover the transcript). The output of decoder layer m (the first MM layer, before its
    block) for the fusion and suffix tokens is then a function of (backbone, m, fusion tokens,
    transcript, suffix ids) alone: computed once per sample, it lets every later step start at the
    first MM block, so a step runs the K + L tokens through the layers above it only. Entries are
    keyed by a digest of the fusion tokens' values and m as well as the ids, so models that share a
    backbone (the demo's assistant and its text-only control) share entries, and a model whose
    fusion tokens or first MM layer differ never reads another's. Per sample (K + L) · D floats.
    Bounded like TextStateCache (`model.text_cache_mb`).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(max_bytes, size=entry_bytes)

    @staticmethod
    def keys_of(text_keys: list[bytes], suffix_ids: Tensor, suffix_mask: Tensor, context: bytes) -> list[bytes]:
        """One key per row: context (first MM layer, fusion digest) + transcript key + the real suffix ids."""
        ids = suffix_ids.long().cpu()
        lengths = suffix_mask.long().sum(1).tolist()
        return [context + b"|" + t + b"|" + ids[b, : lengths[b]].numpy().tobytes()
                for b, t in enumerate(text_keys)]

    def put(self, key: bytes, hidden: Tensor) -> None:
        self.admit(key, hidden)


# (backbone fingerprint) -> (TextStateCache, SuffixStateCache), for model.rationale.prefix_cache: the
# states are the frozen LM's, so every model of the process on an identical backbone may share them.
_SHARED_CACHES: dict[tuple, tuple["TextStateCache", SuffixStateCache]] = {}


def backbone_fingerprint(backbone: Backbone) -> tuple:
    """Name, dtype, depth and a digest of a few weight tensors (the embedding table's first rows,
    the final norm, each layer's first input norm): equal for copies of one backbone."""
    h = hashlib.sha1()
    with torch.no_grad():
        h.update(backbone.embed_tokens.weight[:4].detach().float().cpu().numpy().tobytes())
        for p in backbone.model.base_model.parameters():
            if p.ndim == 1:
                h.update(p.detach().float().cpu().numpy().tobytes())
    return (backbone.name, str(backbone.embed_tokens.weight.dtype), len(backbone.layers), h.hexdigest())


def shared_caches(backbone: Backbone, max_bytes: int = DEFAULT_CACHE_BYTES) -> tuple["TextStateCache", SuffixStateCache]:
    """The process-wide text and suffix caches of this backbone (made on first use, with the first
    caller's budget)."""
    key = backbone_fingerprint(backbone)
    if key not in _SHARED_CACHES:
        _SHARED_CACHES[key] = (TextStateCache(max_bytes), SuffixStateCache(max_bytes))
    return _SHARED_CACHES[key]


def _cache_layers(cache: DynamicCache) -> list[tuple[Tensor, Tensor]]:
    """(keys, values) per layer, each (B, kv_heads, T, head_dim), across transformers versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # transformers < 4.56


class PrefixControl:
    """How the layers up to the first MM block behave in the current pass. Not a Module.

    normal: compute. stop: the first MM layer computes its decoder layer, then ends the pass
    (raises _PrefixDone). skip_mm: every MM layer runs its decoder layer only (a text-only pass
    for `TextStateCache`, where the MM blocks are the identity on text by construction). replay: every layer before it passes its input through untouched and
    the first MM layer takes `held` as its decoder layer's output, so the pass starts there.
    """

    def __init__(self) -> None:
        self.mode: str = "normal"
        self.held: Tensor | None = None

    @contextmanager
    def set(self, mode: str, held: Tensor | None = None) -> Iterator[None]:
        self.mode, self.held = mode, held
        try:
            yield
        finally:
            self.mode, self.held = "normal", None


def _like_layer_output(h: Tensor, returns_tuple: bool):
    # Newer HF layers return a tensor, older ones a tuple whose first item is the hidden state.
    return (h,) if returns_tuple else h


def _run_layer(layer: nn.Module, use_checkpoint: bool, packing: TokenPacking | None, hidden_states: Tensor,
               *args, **kwargs):
    # Activation checkpointing (perf.checkpoint_frozen): only where a gradient flows through.
    # Not in a pass that appends to a KV cache (model.text_cache's fusion pass): recomputing the
    # layer in backward would append its keys/values a second time.
    if any(isinstance(a, Cache) for a in (*args, *kwargs.values())):  # GPT-2 passes it positionally
        use_checkpoint = False
    if use_checkpoint and torch.is_grad_enabled() and hidden_states.requires_grad:
        real = packing.current if packing is not None else None
        if real is None:
            return checkpoint(layer, hidden_states, *args, use_reentrant=False, **kwargs)

        def packed_layer(*a, **k):  # the recomputation in backward packs the same positions (perf.pack_tokens)
            with packing.hold(real):
                return layer(*a, **k)

        return checkpoint(packed_layer, hidden_states, *args, use_reentrant=False, **kwargs)
    return layer(hidden_states, *args, **kwargs)


class CheckpointedLayer(nn.Module):
    """A frozen decoder layer above the first MM block, without an MM block, whose activations are
    recomputed in backward (perf.checkpoint_frozen) instead of stored."""

    def __init__(self, *, layer: nn.Module, packing: TokenPacking | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.packing = packing

    def forward(self, hidden_states: Tensor, *args, **kwargs):
        return _run_layer(self.layer, True, self.packing, hidden_states, *args, **kwargs)


class FrozenPrefixLayer(nn.Module):
    """A frozen decoder layer before the first MM block: skipped (identity) when the pass replays."""

    def __init__(self, *, layer: nn.Module, control: PrefixControl) -> None:
        super().__init__()
        self.layer = layer
        self.control = control
        self.returns_tuple = False

    def forward(self, hidden_states: Tensor, *args, **kwargs):
        if self.control.mode == "replay":
            return _like_layer_output(hidden_states, self.returns_tuple)
        out = self.layer(hidden_states, *args, **kwargs)
        self.returns_tuple = isinstance(out, tuple)
        return out


class DecoderLayerWithMM(nn.Module):
    """A frozen decoder layer followed by its MM block."""

    def __init__(self, *, layer: nn.Module, mm_block: MMBlock, memory: AVMemory,
                 control: PrefixControl | None = None, shared: PrefixControl | None = None, index: int = -1,
                 packing: TokenPacking | None = None) -> None:
        super().__init__()
        self.index = index  # the decoder layer's index: the key of its fusion states (model.rationale.readout)
        self.layer = layer
        self.mm_block = mm_block
        self.memory = memory
        self.packing = packing  # the pass's real positions (perf.pack_tokens), when packing
        self.control = control  # set on the first MM layer only
        self.shared = shared  # the same control, seen by every MM layer (for skip_mm)
        self.returns_tuple = False
        self.checkpoint = False  # perf.checkpoint_frozen (layers above the first MM block only)

    def forward(self, hidden_states: Tensor, *args, **kwargs):
        mode = self.control.mode if self.control is not None else "normal"
        if self.shared is not None and self.shared.mode == "skip_mm":
            mode = "skip_mm"
        if mode == "replay":
            h, returns_tuple, rest = self.control.held, self.returns_tuple, ()
        else:
            out = _run_layer(self.layer, self.checkpoint, self.packing, hidden_states, *args, **kwargs)
            self.returns_tuple = returns_tuple = isinstance(out, tuple)
            h, rest = (out[0], out[1:]) if returns_tuple else (out, ())  # h: (B, T+K, D), backbone dtype
            if mode == "stop":
                raise _PrefixDone(h)
            if mode == "skip_mm":
                return out
        z, z_mask, n_text = self.memory.get()
        # The trainable block runs in float32 even over a bf16 backbone; the residual stream
        # goes back to the backbone's dtype.
        h_new = self._mm(h.float(), z, z_mask, n_text).to(h.dtype)
        return (h_new, *rest) if returns_tuple else h_new

    def _mm(self, h: Tensor, z: Tensor, z_mask: Tensor, n_text: int) -> Tensor:
        n_suffix = self.memory.n_suffix
        real = self.packing.current_for(h) if self.packing is not None else None  # None: no pads, or off
        block = self.mm_block
        if not n_suffix:
            return block(h, z, z_mask, n_text=n_text, real=real)
        # Rationale suffix (model.rationale): the block sees [text ‖ fusion] as always, and the
        # trailing prompt/rationale tokens as text of their own (token-wise parts only, no
        # cross-attention to the AV memory), so they reach AV only through the fusion tokens.
        L = h.shape[1] - n_suffix  # tokens before the suffix (0 in a decoding step)
        suffix_real = real.slice(L) if real is not None else None
        head_real = real.slice(0, L) if real is not None else None
        head, suffix = None, h[:, L:]
        if block.readout is not None:
            # model.rationale.readout: fusion. The suffix first reads this layer's fusion states
            # (after the block's GCA wrote AV into them), so [text ‖ fusion] go first here; the
            # keys/values are the fusion states only, and the text tokens, earlier in the causal
            # order, are untouched.
            if L:
                head = block(h[:, :L], z, z_mask, n_text=n_text, real=head_real)  # (B, T+K, D)
                fusion = self.memory.fusion_states[self.index] = head[:, n_text:]  # (B, K, D)
            else:  # a decoding step: the states the prefix pass left (MultimodalLMOutput.mm_fusion_states)
                fusion = self.memory.fusion_states.get(self.index)
                if fusion is None:
                    raise RuntimeError(f"model.rationale.readout: no fusion states of layer {self.index} for this "
                                       "decoding step; pass the prefix pass's mm_fusion_states to decode_step")
            suffix = block.readout(suffix, fusion.to(h.dtype))
        suffix = block(suffix, z, z_mask, n_text=n_suffix, real=suffix_real)
        if self.memory.suffix_ffw and block.ffw_tokens == "fusion":
            # The FFW on the suffix too (token-wise, no AV): capacity to write the format, while the
            # transcript keeps the frozen LM's states. (ffw_tokens all already updates the suffix.)
            suffix = block.ffw_only(suffix, suffix_real)
        if L == 0:
            return suffix
        if head is None:
            head = block(h[:, :L], z, z_mask, n_text=n_text, real=head_real)
        return torch.cat([head, suffix], dim=1)


def _decoder_layer(layer: nn.Module) -> nn.Module:
    """The HF decoder layer inside our wrappers (prefix, MM, checkpointing)."""
    while isinstance(layer, (DecoderLayerWithMM, FrozenPrefixLayer, CheckpointedLayer)):
        layer = layer.layer
    return layer


def ensure_unwrapped(backbone: Backbone) -> None:
    """A backbone carries one set of MM blocks: building a second model on it is an error."""
    if any(isinstance(layer, (DecoderLayerWithMM, FrozenPrefixLayer, CheckpointedLayer)) for layer in backbone.layers):
        raise BackboneError(f"backbone {backbone.name!r} is already wrapped; load a fresh copy for a new model")


@dataclass
class MultimodalLMOutput:
    text_hidden: Tensor  # (B, T, D) float32, after the LM's final norm
    fusion_hidden: Tensor  # (B, K, D) float32, after the LM's final norm
    suffix_hidden: Tensor | None = None  # (B, L, D) float32: the rationale suffix's states, when given
    # model.rationale.readout: fusion, a pass with a suffix: MM layer -> its fusion states (B, K, D),
    # what decoding steps read (`MultimodalLM.decode_step`). None otherwise.
    mm_fusion_states: dict[int, Tensor] | None = None


class MultimodalLM(nn.Module):
    """Frozen backbone + fusion tokens (eq. 7) + MM blocks after the layers in `mm_blocks`.

    Takes ownership of `backbone.model`: its layer list is rewired in place, so a backbone is
    given to one MultimodalLM only. The backbone's own modules stay in eval mode (no dropout):
    it is a fixed feature extractor, and that keeps "closed gates == the frozen LM" exact.
    `backbone_dropout=True` lets them follow train()/eval() instead, so the backbone's own dropout
    (GPT-2: 0.1) is active in training, as in the authors' code; its weights stay frozen either way.
    """

    def __init__(
        self, *, backbone: Backbone, mm_blocks: dict[int, MMBlock], n_fusion: int, augment: EmbeddingAugment,
        backbone_dropout: bool = False, fusion_init_std: float = 0.02,
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
        self.prefix = PrefixControl()
        self.packing = TokenPacking()  # perf.pack_tokens: hooks on the frozen token-wise modules when on
        self.split_prefix = True  # False: one pass over T+K tokens in training too (reference path)
        self.mm_layers = sorted(mm_blocks)
        first = self.mm_layers[0]
        for i, block in sorted(mm_blocks.items()):
            layers[i] = DecoderLayerWithMM(layer=layers[i], mm_block=block, memory=self.memory,
                                           control=self.prefix if i == first else None, shared=self.prefix, index=i,
                                           packing=self.packing)
        for i in range(first):
            layers[i] = FrozenPrefixLayer(layer=layers[i], control=self.prefix)
        D = backbone.hidden_size
        # N(0, fusion_init_std²), float32; 0.02 by default (the authors'), model.fusion_init_std otherwise.
        self.fusion_tokens = nn.Parameter(torch.randn(n_fusion, D) * fusion_init_std)
        self.augment = augment
        self.backbone_dropout = backbone_dropout
        self.text_cache: TextStateCache | None = None  # set by build_model when model.text_cache
        self.suffix_cache: SuffixStateCache | None = None  # set by build_model when model.rationale.prefix_cache
        # Performance switches (config `perf`, set by the builder; all off = the reference path).
        self.dynamic_padding = False  # run over the batch's longest transcript only
        self.prefix_cache: PrefixCache | None = None  # frozen text prefix reused across batches
        self.autocast_mode = "off"  # perf.autocast: bf16 autocast over the backbone and the MM blocks
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
        if not self.backbone_dropout:
            for m in self._frozen_modules:
                m.training = False  # non-recursive: the MM blocks inside the wrappers follow `mode`
        return self

    def set_checkpoint_frozen(self, on: bool) -> None:
        """Activation checkpointing of the frozen decoder layers above the first MM block."""
        layers = self.backbone.layers
        for i in range(self.mm_layers[0] + 1, len(layers)):
            layer = layers[i]
            if isinstance(layer, DecoderLayerWithMM):
                layer.checkpoint = on
            elif on and not isinstance(layer, CheckpointedLayer):
                layers[i] = CheckpointedLayer(layer=layer, packing=self.packing)
            elif not on and isinstance(layer, CheckpointedLayer):
                layers[i] = layer.layer

    def set_pack_tokens(self, on: bool, *, attention: bool = True) -> None:
        """perf.pack_tokens: the frozen layers' MLPs and attention projections (`attention`), and the
        MM blocks' FFWs, run on real positions only."""
        if not on:
            self.packing.remove()
            return
        family = self.backbone.family
        paths = (family.mlp, *(family.attn_proj if attention else ()))
        self.packing.install([_decoder_layer(layer).get_submodule(path)
                              for layer in self.backbone.layers for path in paths])

    @property
    def pack_tokens(self) -> bool:
        return self.packing.installed

    def _base(self, **kwargs):
        """One pass of the HF base model; under perf.pack_tokens with its query positions' real ones
        held for the packed token-wise parts (the queries: the attention mask's last columns)."""
        with self.packing.for_pass(kwargs["attention_mask"], kwargs["inputs_embeds"].shape[1]):
            return self.backbone_model.base_model(**kwargs)

    @property
    def n_fusion(self) -> int:
        return self.fusion_tokens.shape[0]

    # ------------------------------------------------------------------ forward
    def autocast_enabled(self, device: torch.device) -> bool:
        return self.autocast_mode != "off" and resolve_autocast(self.autocast_mode, device)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast over the backbone and the MM blocks when `autocast_mode` says so here."""
        if not self.autocast_enabled(device):
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def forward(self, input_ids: Tensor | None, attention_mask: Tensor, z: Tensor, z_mask: Tensor, *,
                suffix_embeds: Tensor | None = None, suffix_mask: Tensor | None = None,
                cache: DynamicCache | None = None, inputs_embeds: Tensor | None = None,
                suffix_ids: Tensor | None = None) -> MultimodalLMOutput:
        # input_ids, attention_mask: (B, T); z: (B, S, D_av) normed AV memory; z_mask: (B, S)
        # suffix_embeds (B, L, D), suffix_mask (B, L): the rationale suffix after the fusion tokens
        # (model.rationale), positions T+K..T+K+L-1; cache: filled for decoding (no-grad pass only).
        # inputs_embeds (B, T, D): in place of input_ids (the double flow's imagined tokens,
        # model.double_flow): no augmentation, no text caches, a differentiable prefix (no prefix split).
        # suffix_ids (B, L): the token ids behind suffix_embeds (the key of `suffix_cache`, when set).
        with self.autocast(attention_mask.device):
            if (self.suffix_cache is not None and self.text_cache is not None and suffix_ids is not None
                    and suffix_embeds is not None and cache is None and inputs_embeds is None):
                return self._forward_suffix_cached(input_ids, attention_mask, z, z_mask, suffix_embeds,
                                                   suffix_mask, suffix_ids)
            return self._forward(input_ids, attention_mask, z, z_mask, suffix_embeds, suffix_mask, cache,
                                 inputs_embeds)

    def _forward(self, input_ids: Tensor, attention_mask: Tensor, z: Tensor, z_mask: Tensor,
                 suffix_embeds: Tensor | None, suffix_mask: Tensor | None,
                 cache: DynamicCache | None, inputs_embeds: Tensor | None = None) -> MultimodalLMOutput:
        B, T_in = (input_ids if inputs_embeds is None else inputs_embeds).shape[:2]
        K = self.n_fusion
        L = 0 if suffix_embeds is None else suffix_embeds.shape[1]
        if self.text_cache is not None and not L and cache is None and inputs_embeds is None:
            return self._forward_cached(input_ids, attention_mask, z, z_mask)
        text_mask = attention_mask.bool()
        if inputs_embeds is None:
            x_embed = self.backbone.embed_tokens(input_ids)  # (B, T, D), frozen
            # At the collated width, so the augmentation draws (and, per batch, permutes) as it always did.
            x_t = self.augment(x_embed, text_mask)  # training only
        else:
            x_embed = x_t = inputs_embeds.to(self.backbone.embed_tokens.weight.dtype)
        augmented = x_t is not x_embed
        T = T_in
        if self.dynamic_padding and cache is None and inputs_embeds is None:  # (a decoding cache keeps the collated width)
            # Right padding: positions from the longest real length on are pads in every row; no real
            # token or fusion token attends to them, and no head or loss reads them.
            T = max(1, int(attention_mask.sum(1).max()))
            input_ids, attention_mask, x_t = input_ids[:, :T], attention_mask[:, :T], x_t[:, :T]
        x_f = self.fusion_tokens.to(x_t.dtype).expand(B, -1, -1)  # (B, K, D)
        full_mask = torch.cat([attention_mask.long(), attention_mask.new_ones(B, K).long()], dim=1)
        if L:
            x_f = torch.cat([x_f, suffix_embeds.to(x_t.dtype)], dim=1)  # (B, K+L, D): runs like the fusion tokens
            full_mask = torch.cat([full_mask, suffix_mask.long()], dim=1)
        # Fusion tokens take positions T_in..T_in+K-1 after the padded text (authors' layout), also
        # when the pads behind T are not run.
        dev = attention_mask.device
        position_ids = torch.cat([torch.arange(T, device=dev), torch.arange(T_in, T_in + K + L, device=dev)])
        position_ids = position_ids[None, :].expand(B, -1)
        # The text-state cache: valid when nothing random touched those states.
        use_cache = (self.prefix_cache is not None and cache is None and not augmented
                     and not (self.backbone_dropout and self.training) and inputs_embeds is None)
        split = (self.split_prefix and torch.is_grad_enabled() and self.fusion_tokens.requires_grad and cache is None
                 and not x_t.requires_grad)
        if use_cache or split:
            h0 = x_t.new_zeros(B, T + K + L, x_t.shape[-1])  # ignored: the pass replays from layer m
            held = self._prefix_split(x_t, x_f, attention_mask.long(), full_mask, position_ids,
                                      input_ids=input_ids if use_cache else None)
            replay = self.prefix.set("replay", held)
        else:
            h0, replay = torch.cat([x_t, x_f], dim=1), contextlib.nullcontext()  # (B, T+K(+L), D), eq. 7
        kv = {"past_key_values": cache, "use_cache": True} if cache is not None else {"use_cache": False}
        with self.memory.hold(z.float(), z_mask, n_text=T, n_suffix=L) as states, replay:
            hidden = self._base(
                inputs_embeds=h0, attention_mask=full_mask, position_ids=position_ids, **kv
            ).last_hidden_state  # (B, T+K(+L), D), after the final norm
        hidden = hidden.float()
        return MultimodalLMOutput(text_hidden=hidden[:, :T], fusion_hidden=hidden[:, T:T + K],
                                  suffix_hidden=hidden[:, T + K:] if L else None,
                                  mm_fusion_states=states or None)

    def new_cache(self) -> DynamicCache:
        try:
            return DynamicCache(config=self.backbone_model.config)
        except TypeError:  # transformers < 4.56 builds its layers lazily, without a config
            return DynamicCache()

    def decode_step(self, embeds: Tensor, attention_mask: Tensor, position_ids: Tensor, z: Tensor, z_mask: Tensor,
                    cache: DynamicCache, fusion_states: dict[int, Tensor] | None = None) -> Tensor:
        """One decoding step of the rationale suffix: embeds (B, 1, D) at `position_ids` (B, 1), the
        cache holding everything before; attention_mask (B, past+1); `fusion_states` the prefix
        pass's `mm_fusion_states` (model.rationale.readout: fusion). Returns (B, 1, D) float32."""
        with self.memory.hold(z.float(), z_mask, n_text=0, n_suffix=embeds.shape[1], fusion_states=fusion_states):
            hidden = self.backbone_model.base_model(
                inputs_embeds=embeds.to(self.backbone.embed_tokens.weight.dtype), attention_mask=attention_mask,
                position_ids=position_ids, past_key_values=cache, use_cache=True,
            ).last_hidden_state
        return hidden.float()

    def _forward_cached(self, input_ids: Tensor, attention_mask: Tensor, z: Tensor, z_mask: Tensor) -> MultimodalLMOutput:
        """The text tokens' frozen states from `text_cache` (computed on a miss, text only, no_grad),
        then the K fusion tokens alone through every layer, attending to the cached keys/values.
        Same computation as the one pass over T+K tokens (text never sees the fusion tokens)."""
        B, T = input_ids.shape
        found, text_keys = self._text_entries(input_ids, attention_mask)
        text_hidden = torch.stack([h for _, h in found]).float()  # (B, T, D)
        kv = self._text_kv(found)
        pos = torch.arange(T + self.n_fusion, device=input_ids.device)[None, :]
        x_f = self.fusion_tokens.to(self.backbone.embed_tokens.weight.dtype).expand(B, -1, -1)  # (B, K, D)
        full_mask = torch.cat([attention_mask.long(), attention_mask.new_ones(B, self.n_fusion).long()], dim=1)
        replay = contextlib.nullcontext()
        if not self.fusion_tokens.requires_grad:  # model.fusion_trainable=false
            # Nothing trainable below the first MM block touches the fusion tokens: their states
            # under it are a function of the transcript, cached like the text's, and the pass
            # replays from there, so layers 0..m run once per transcript, not once per step.
            held = self._cached_fusion_prefix(found, text_keys, x_f, full_mask, pos[:, T:])
            replay = self.prefix.set("replay", held)
        with self.memory.hold(z.float(), z_mask, n_text=0), replay:
            fusion = self._base(
                inputs_embeds=x_f, attention_mask=full_mask, position_ids=pos[:, T:].expand(B, -1),
                past_key_values=kv, use_cache=True,
            ).last_hidden_state  # (B, K, D)
        return MultimodalLMOutput(text_hidden=text_hidden, fusion_hidden=fusion.float())

    def _cached_fusion_prefix(self, found: list, text_keys: list[bytes], x_f: Tensor, full_mask: Tensor,
                              position_ids: Tensor) -> Tensor:
        """(B, K, D): the frozen fusion tokens' output of the decoder layer under the first MM block,
        per transcript from `text_cache` (computed no_grad on a miss, against the cached text
        keys/values). Keyed by the first MM layer and the fusion tokens' values as well, so new
        values (a loaded checkpoint) or another model sharing the cache never read stale states."""
        context = self._fusion_context()
        store = self.text_cache.fusion_states
        keys = [context + b"|" + k for k in text_keys]
        states = [store.get(k) for k in keys]
        missing = [b for b, h in enumerate(states) if h is None]
        if missing:
            idx = torch.tensor(missing, device=x_f.device)
            with torch.no_grad():
                h = self._run_prefix(x_f[idx], full_mask[idx], position_ids.expand(len(missing), -1),
                                     self._text_kv([found[b] for b in missing]))  # (M, K, D)
            for j, b in enumerate(missing):
                states[b] = h[j].clone()
                store.admit(keys[b], states[b])
        return torch.stack(states)

    def _fusion_context(self) -> bytes:
        """What the frozen states of the fusion tokens (and anything after them) below the first MM
        block depend on besides the ids: that layer and the fusion tokens' values (in the backbone's
        dtype). The key prefix of `TextStateCache.fusion_states` and `SuffixStateCache`."""
        x_f = self.fusion_tokens.to(self.backbone.embed_tokens.weight.dtype)
        return hashlib.sha1(f"m{self.mm_layers[0]}:".encode() + x_f.detach().float().cpu().numpy().tobytes()).digest()

    def _text_kv(self, found: list) -> DynamicCache:
        """A KV cache holding the text entries' keys/values at every layer (rows in batch order)."""
        kv = self.new_cache()
        for li in range(len(found[0][0])):
            kv.update(torch.stack([e[li][0] for e, _ in found]), torch.stack([e[li][1] for e, _ in found]), li)
        return kv

    def _text_entries(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[list, list[bytes]]:
        """Per row (per-layer (keys, values), final text states) from `text_cache`, the missing rows
        computed once (text only, no_grad); and the rows' keys."""
        cache = self.text_cache
        B, T = input_ids.shape
        keys = cache.keys_of(input_ids, attention_mask)
        found = [cache.get(k) for k in keys]  # counts hits and misses
        missing = [b for b, f in enumerate(found) if f is None]
        pos = torch.arange(T + self.n_fusion, device=input_ids.device)[None, :]
        if missing:
            idx = torch.tensor(missing, device=input_ids.device)
            kv = self.new_cache()
            with torch.no_grad(), self.prefix.set("skip_mm"):
                hidden = self._base(
                    inputs_embeds=self.backbone.embed_tokens(input_ids[idx]), attention_mask=attention_mask[idx].long(),
                    position_ids=pos[:, :T].expand(len(missing), -1), past_key_values=kv, use_cache=True,
                ).last_hidden_state  # (M, T, D) after the final norm
            layers = _cache_layers(kv)
            for j, b in enumerate(missing):
                entry = tuple((k[j].clone(), v[j].clone()) for k, v in layers)
                cache.put(keys[b], entry, hidden[j].clone())
                found[b] = (entry, hidden[j])
        return found, keys

    def _forward_suffix_cached(self, input_ids: Tensor, attention_mask: Tensor, z: Tensor, z_mask: Tensor,
                               suffix_embeds: Tensor, suffix_mask: Tensor, suffix_ids: Tensor) -> MultimodalLMOutput:
        """`model.rationale.prefix_cache`: text states from `text_cache`; the output of the first MM
        layer's decoder layer for [fusion ‖ suffix] from `suffix_cache` (computed on a miss: those
        tokens through layers 0..m, attending to the cached text keys/values, no_grad); then the
        K + L tokens from the first MM block on, attending to the cached text keys/values. The same
        computation as the one pass over T+K+L tokens: the text never sees what follows it, and
        below the first MM block nothing trainable acts (fusion tokens frozen, checked at build)."""
        if self.fusion_tokens.requires_grad:
            raise RuntimeError("suffix_cache needs frozen fusion tokens (model.fusion_trainable=false)")
        B, T = input_ids.shape
        K, L = self.n_fusion, suffix_embeds.shape[1]
        dev = input_ids.device
        dtype = self.backbone.embed_tokens.weight.dtype
        found, text_keys = self._text_entries(input_ids, attention_mask)
        text_hidden = torch.stack([h for _, h in found]).float()  # (B, T, D)
        x_f = self.fusion_tokens.to(dtype)
        context = self._fusion_context()
        store = self.suffix_cache
        keys = store.keys_of(text_keys, suffix_ids, suffix_mask, context)
        rows = [store.get(k) for k in keys]  # counts hits and misses
        missing = [b for b, r in enumerate(rows) if r is None]
        full_mask = torch.cat([attention_mask.long(), attention_mask.new_ones(B, K).long(), suffix_mask.long()], dim=1)
        pos = torch.arange(T + K + L, device=dev)[None, :]
        if missing:
            idx = torch.tensor(missing, device=dev)
            x = torch.cat([x_f.expand(len(missing), -1, -1), suffix_embeds[idx].to(dtype)], dim=1)  # (M, K+L, D)
            with torch.no_grad():
                h = self._run_prefix(x, full_mask[idx], pos[:, T:].expand(len(missing), -1),
                                     self._text_kv([found[b] for b in missing]))  # (M, K+L, D)
            lengths = suffix_mask.long().sum(1).tolist()
            for j, b in enumerate(missing):
                rows[b] = h[j, : K + lengths[b]].clone()
                store.put(keys[b], rows[b])
        held = x_f.new_zeros(B, K + L, x_f.shape[-1])  # pads behind each row's real suffix: never attended to
        for b, r in enumerate(rows):
            held[b, : r.shape[0]] = r.to(dtype)
        h0 = torch.zeros_like(held)  # ignored: the pass replays from the first MM layer
        with self.memory.hold(z.float(), z_mask, n_text=0, n_suffix=L) as states, self.prefix.set("replay", held):
            hidden = self._base(
                inputs_embeds=h0, attention_mask=full_mask, position_ids=pos[:, T:].expand(B, -1),
                past_key_values=self._text_kv(found), use_cache=True,
            ).last_hidden_state.float()  # (B, K+L, D)
        return MultimodalLMOutput(text_hidden=text_hidden, fusion_hidden=hidden[:, :K], suffix_hidden=hidden[:, K:],
                                  mm_fusion_states=states or None)

    def _prefix_split(self, x_t: Tensor, x_f: Tensor, text_mask: Tensor, full_mask: Tensor,
                      position_ids: Tensor, input_ids: Tensor | None = None) -> Tensor:
        """Output (B, T+K, D) of the decoder layer under the first MM block, computed as text
        (no_grad, filling a KV cache; from `prefix_cache` when `input_ids` is given) then fusion
        tokens (with gradients, reading the cache)."""
        T = x_t.shape[1]
        cache = self.new_cache()
        if input_ids is not None:
            h_t = self._cached_text_prefix(input_ids, x_t, text_mask, position_ids[:, :T], cache)
        else:
            with torch.no_grad():
                h_t = self._run_prefix(x_t, text_mask, position_ids[:, :T], cache)  # (B, T, D)
        h_f = self._run_prefix(x_f, full_mask, position_ids[:, T:], cache)  # (B, K, D)
        return torch.cat([h_t, h_f], dim=1)

    def _cached_text_prefix(self, input_ids: Tensor, x_t: Tensor, text_mask: Tensor, position_ids: Tensor,
                            cache: DynamicCache) -> Tensor:
        """The text part of `_prefix_split` through `prefix_cache`: computes the rows it misses
        (and stores them), fills `cache` with every row's keys/values, returns (B, T, D)."""
        store = self.prefix_cache
        B, T = input_ids.shape
        n_layers = self.mm_layers[0] + 1  # layers 0..m fill the KV cache
        dev = x_t.device
        fingerprint = (str(x_t.dtype), str(dev), torch.is_autocast_enabled(dev.type),
                       str(torch.get_autocast_dtype(dev.type)) if torch.is_autocast_enabled(dev.type) else "")
        lengths = text_mask.sum(1).clamp(min=1).tolist()
        keys = [store.key(input_ids[b, : lengths[b]], fingerprint) for b in range(B)]
        entries = [store.get(k) for k in keys]
        missing = [b for b, e in enumerate(entries) if e is None]
        if missing:
            rows = torch.tensor(missing, device=dev)
            width = max(lengths[b] for b in missing)
            fresh = self.new_cache()
            with torch.no_grad():
                h = self._run_prefix(x_t[rows, :width], text_mask[rows, :width], position_ids[rows, :width], fresh)
                kv = torch.stack([torch.stack(kv_i) for kv_i in _cache_layers(fresh)[:n_layers]])  # (P, 2, Bm, Hk, W, hd)
            for j, b in enumerate(missing):
                L = lengths[b]
                entry_kv, entry_h = kv[:, :, j, :, :L], h[j, :L]
                entries[b] = store.put(keys[b], entry_kv, entry_h) or PrefixEntry(kv=entry_kv, hidden=entry_h)
        kv_all, hidden = PrefixCache.assemble(entries, T)  # (P, 2, B, Hk, T, hd), (B, T, D)
        for i in range(n_layers):
            cache.update(kv_all[i, 0], kv_all[i, 1], i)
        return hidden

    def _run_prefix(self, x: Tensor, mask: Tensor, position_ids: Tensor, cache: DynamicCache) -> Tensor:
        try:
            with self.prefix.set("stop"):
                self._base(inputs_embeds=x, attention_mask=mask, position_ids=position_ids,
                           past_key_values=cache, use_cache=True)
        except _PrefixDone as done:
            return done.hidden
        raise RuntimeError("the prefix pass did not reach the first MM layer")  # pragma: no cover

    def lm_logits(self, text_hidden: Tensor) -> Tensor:
        """Next-token logits on the text positions only (B, T, D) -> (B, T, V) float32 (or any
        (B, L, D) states: the rationale suffix's)."""
        head = self.backbone.lm_head
        B, T, D = text_hidden.shape
        # Flattened and contiguous: a strided (B, T, D) slice would make linear fall back to a
        # batched matmul against a broadcast copy of the (V, D) weight.
        x = text_hidden.to(head.weight.dtype).reshape(B * T, D).contiguous()
        with self.autocast(text_hidden.device):
            return head(x).float().view(B, T, -1)

    def lm_loss_chunked(self, text_hidden: Tensor, targets: Tensor, chunk: int) -> Tensor:
        """Mean next-token cross-entropy over the positions with a target (not -100), `chunk`
        tokens at a time; in training each chunk's logits are recomputed in backward, so the
        (tokens x V) logits never exist whole. text_hidden: (B, T, D), targets: (B, T)."""
        real = targets != -100
        x = text_hidden[real]  # (N, D) real positions only
        y = targets[real]  # (N,)
        head = self.backbone.lm_head
        if not self.autocast_enabled(x.device) and not any(p.requires_grad for p in head.parameters()):
            # Frozen head, float32: the gradient of each chunk is formed in the forward pass (no
            # recomputation of the logits in backward; _ChunkedHeadCE).
            need_grad = torch.is_grad_enabled() and x.requires_grad  # (a Function's needs_input_grad ignores no_grad)
            return _ChunkedHeadCE.apply(x, head.weight, head.bias, y, chunk, need_grad) / max(1, y.numel())
        total = x.new_zeros(())
        for start in range(0, x.shape[0], chunk):
            xc, yc = x[start:start + chunk], y[start:start + chunk]
            if torch.is_grad_enabled() and xc.requires_grad:
                total = total + checkpoint(self._chunk_ce_sum, xc, yc, use_reentrant=False)
            else:
                total = total + self._chunk_ce_sum(xc, yc)
        return total / max(1, y.numel())

    def _chunk_ce_sum(self, x: Tensor, y: Tensor) -> Tensor:
        head = self.backbone.lm_head
        with self.autocast(x.device):
            logits = head(x.to(head.weight.dtype).contiguous()).float()  # (n, V)
        return F.cross_entropy(logits, y, reduction="sum")


class _ChunkedHeadCE(torch.autograd.Function):
    """Sum over rows of cross_entropy(x @ W^T + b, y) through a frozen LM head, `chunk` rows at a
    time, with d(sum)/dx formed chunk by chunk in the forward pass: softmax(logits) - onehot(y),
    times W. Exact (the same float32 arithmetic as autograd's), the (N x V) logits never exist
    whole, and backward is one scaling of the stored (N, D) gradient instead of a recomputation of
    every chunk's logits (perf.lm_loss_chunk with a frozen float32 head; the trick of fused
    linear-cross-entropy kernels). W (V, D) and b get no gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, y: Tensor, chunk: int, need_grad: bool) -> Tensor:
        w = weight.to(x.dtype)
        grad_x = torch.empty_like(x) if need_grad else None  # (N, D)
        total = x.new_zeros((), dtype=torch.float32)
        for start in range(0, x.shape[0], chunk):
            xc, yc = x[start:start + chunk], y[start:start + chunk]
            logits = F.linear(xc, w, None if bias is None else bias.to(x.dtype)).float()  # (n, V)
            total += F.cross_entropy(logits, yc, reduction="sum")
            if need_grad:
                probs = logits.softmax(dim=-1)  # d(sum CE)/d logits = softmax - onehot
                probs[torch.arange(len(yc), device=yc.device), yc] -= 1.0
                grad_x[start:start + chunk] = (probs.to(w.dtype) @ w).to(x.dtype)
        if need_grad:
            ctx.save_for_backward(grad_x)
        return total

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (grad_x,) = ctx.saved_tensors
        return grad_x * grad_out.to(grad_x.dtype), None, None, None, None, None
