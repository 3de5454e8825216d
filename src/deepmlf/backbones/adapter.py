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
    # The attention's token-wise input/output projections, relative to the layer (perf.pack_tokens).
    attn_proj: tuple[str, ...] = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")


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
        attn_proj=("attn.c_attn", "attn.c_proj"),
    ),
    # Llama family: same layout, SwiGLU MLP, RMSNorm.
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
}


class UnsupportedBackbone(BackboneError):
    pass


def prepare_tokenizer(tokenizer: object, name: str) -> object:
    """Give a tokenizer both an eos and a pad token (the authors' conventions), right padding.

    GPT-2 / Llama tokenizers have an eos but no pad: pad = eos. BERT-style tokenizers (the SIMS
    backbone uer/gpt2-chinese-cluecorpussmall ships a BertTokenizer) have [PAD] but no eos: eos =
    pad = [PAD], so the last real token learns to predict [PAD] (authors-code-behaviour.md §1, §4).
    """
    eos, pad = getattr(tokenizer, "eos_token", None), getattr(tokenizer, "pad_token", None)
    if eos is None and pad is None:
        raise BackboneError(
            f"backbone {name!r}: its tokenizer ({type(tokenizer).__name__}) has neither an eos nor a pad token; "
            "deepmlf needs one to pad transcripts and as the LM loss's end-of-text target"
        )
    if pad is None:
        tokenizer.pad_token = eos
    elif eos is None:
        tokenizer.eos_token = pad
    tokenizer.padding_side = "right"
    return tokenizer


@dataclass(frozen=True)
class BackboneSpec:
    """What the config is checked against, known without loading weights (`inspect_backbone`)."""

    name: str
    model_type: str
    n_layers: int
    hidden_size: int
    max_positions: int | None  # learned position table size (GPT-2 n_positions); None = rotary, no hard cap
    tokenizer: object  # prepared: eos and pad set (`prepare_tokenizer`)

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @classmethod
    def from_hf_config(cls, config: object, tokenizer: object, name: str) -> "BackboneSpec":
        model_type = getattr(config, "model_type", None)
        if model_type not in FAMILIES:
            raise UnsupportedBackbone(
                f"backbone {name!r} has model_type {model_type!r}; supported: {', '.join(sorted(FAMILIES))}"
            )
        # GPT-2 has a learned table of n_positions; Llama-family rotary positions have no hard limit.
        max_positions = getattr(config, "n_positions", None) if model_type == "gpt2" else None
        return cls(
            name=name, model_type=model_type, n_layers=int(config.num_hidden_layers),
            hidden_size=int(config.hidden_size), max_positions=max_positions,
            tokenizer=prepare_tokenizer(tokenizer, name),
        )


@dataclass
class Backbone:
    """A loaded causal LM plus its tokenizer, with family-independent accessors."""

    model: nn.Module  # a transformers *ForCausalLM
    tokenizer: object  # a transformers tokenizer, eos and pad set by `prepare_tokenizer`
    name: str  # what the user asked for (built-in name or path)
    kind: str = "built-in"  # how it resolved: "built-in", "local", "hf-cache" or "gguf" (see loading.py)
    source: str = ""  # where the weights were read from (a directory or .gguf file; "" = built in code)

    def __post_init__(self) -> None:
        mt = self.model_type
        if mt not in FAMILIES:
            raise UnsupportedBackbone(
                f"backbone {self.name!r} has model_type {mt!r}; supported: {', '.join(sorted(FAMILIES))}"
            )
        prepare_tokenizer(self.tokenizer, self.name)

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

    def spec(self) -> BackboneSpec:
        return BackboneSpec.from_hf_config(self.model.config, self.tokenizer, self.name)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def freeze(self) -> None:
        self.model.requires_grad_(False)
