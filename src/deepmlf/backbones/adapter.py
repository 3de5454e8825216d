"""One view over GPT-2 and Llama-family causal LMs: where the layers, MLPs and norms live.

Keyed on `config.model_type` (peft's habit), never on class-name substrings. Everything the
multimodal wrapper needs from a backbone goes through `Backbone`, so adding a family is one
entry in `FAMILIES`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BackboneError


@dataclass(frozen=True)
class Family:
    """Attribute paths inside a `*ForCausalLM` for one architecture family."""

    layers: str  # the decoder layer ModuleList
    embed_tokens: str
    final_norm: str
    layer_norm: str  # a norm inside each layer whose kind the MM blocks reuse (fresh copy)
    mlp: str = "mlp"  # the layer's MLP, relative to the layer
    mlp_kind: str = "swiglu"  # "gpt2" (Conv1D c_fc/c_proj) or "swiglu" (gate/up/down)


_LLAMA = Family(
    layers="model.layers",
    embed_tokens="model.embed_tokens",
    final_norm="model.norm",
    layer_norm="input_layernorm",
)

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        layers="transformer.h",
        embed_tokens="transformer.wte",
        final_norm="transformer.ln_f",
        layer_norm="ln_1",
        mlp_kind="gpt2",
    ),
    # Llama family: same layout, SwiGLU MLP, RMSNorm.
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
}


class UnsupportedBackbone(BackboneError):
    pass


@dataclass
class Backbone:
    """A loaded causal LM plus its tokenizer, with family-independent accessors."""

    model: nn.Module  # a transformers *ForCausalLM
    tokenizer: object  # a transformers tokenizer with pad_token set
    name: str  # what the user asked for (built-in name or path)
    kind: str = "built-in"  # how it resolved: "built-in", "local", "hf-cache" or "gguf" (see loading.py)
    source: str = ""  # where the weights were read from (a directory or .gguf file; "" = built in code)

    def __post_init__(self) -> None:
        mt = self.model_type
        if mt not in FAMILIES:
            raise UnsupportedBackbone(
                f"backbone {self.name!r} has model_type {mt!r}; supported: {', '.join(sorted(FAMILIES))}"
            )
        if getattr(self.tokenizer, "pad_token", None) is None:
            # Authors' convention: pad = eos, right padding.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"

    # ------------------------------------------------------------------ structure
    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_type]

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.get_submodule(self.family.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "hidden_size", None) or cfg.n_embd)

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.model.get_submodule(self.family.embed_tokens)

    @property
    def final_norm(self) -> nn.Module:
        return self.model.get_submodule(self.family.final_norm)

    @property
    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    @property
    def mlp_kind(self) -> str:
        return self.family.mlp_kind

    def mlp(self, i: int) -> nn.Module:
        return self.layers[i].get_submodule(self.family.mlp)

    def make_norm(self) -> nn.Module:
        """A fresh norm of the backbone's own kind (LayerNorm for GPT-2, RMSNorm for Llama), width D."""
        norm = copy.deepcopy(self.layers[0].get_submodule(self.family.layer_norm))
        with torch.no_grad():
            for name, p in norm.named_parameters(recurse=False):
                p.fill_(0.0 if name == "bias" else 1.0)
        for p in norm.parameters():
            p.requires_grad_(True)
        return norm.float()

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def freeze(self) -> None:
        self.model.requires_grad_(False)
