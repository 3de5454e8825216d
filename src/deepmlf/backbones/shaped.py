"""Random backbones with the real shapes of the presets' LMs, built in code (tests, benchmarks).

Random weights cost the same time and memory per layer as the real ones, and they carry what a
config is checked against: the layer count, the width, the attention heads, the position limit and
the tokenizer kind (byte-level BPE with eos and no pad for GPT-2 / SmolLM2, a character-level
BertTokenizer with [PAD] and no eos for the Chinese GPT-2). Nothing is read from disk.

The shapes are those of each model's published config.json (Hugging Face hub):
    gpt2                              GPT-2, 12 layers, D 768, 12 heads, MLP 3072, vocab 50257
    gpt2-large                        GPT-2, 36 layers, D 1280, 20 heads, MLP 5120, vocab 50257
    uer/gpt2-chinese-cluecorpussmall  GPT-2, 12 layers, D 768, 12 heads, MLP 3072, vocab 21128 (BertTokenizer)
    HuggingFaceTB/SmolLM2-1.7B        Llama, 24 layers, D 2048, 32 heads (32 kv), MLP 8192, vocab 49152
    smollm2-135m                      Llama, 30 layers, D 576, 9 heads (3 kv), MLP 1536, vocab 49152
`vocab_size` and `mlp_size` may be shrunk to keep a test small (the MM blocks copy the MLP, so its
width sets their cost, not whether the config fits the backbone).

Drawing hundreds of millions of N(0, 0.02) values (twice: torch's init, then HF's) costs seconds on
two cores, so the model is built on the meta device and every matrix is tiled from one small random
pool instead (norm weights 1, biases 0): values that mean nothing, as random weights do, for the
cost of a memory copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from .adapter import Backbone
from .tiny import bert_char_tokenizer, byte_tokenizer


@dataclass(frozen=True)
class Shape:
    family: Literal["gpt2", "llama"]
    n_layers: int
    hidden: int
    n_heads: int
    mlp: int  # MLP inner width
    vocab: int
    tokenizer: Literal["bpe", "bert"]  # byte-level BPE (eos, no pad) or BertTokenizer ([PAD], no eos)
    n_kv_heads: int | None = None  # Llama: grouped-query attention
    rope_theta: float = 10000.0
    max_positions: int = 1024


SHAPES: dict[str, Shape] = {
    "gpt2": Shape("gpt2", 12, 768, 12, 3072, 50257, "bpe"),
    "gpt2-large": Shape("gpt2", 36, 1280, 20, 5120, 50257, "bpe"),
    "uer/gpt2-chinese-cluecorpussmall": Shape("gpt2", 12, 768, 12, 3072, 21128, "bert"),
    "HuggingFaceTB/SmolLM2-1.7B": Shape("llama", 24, 2048, 32, 8192, 49152, "bpe", n_kv_heads=32,
                                        rope_theta=130000.0, max_positions=8192),
    "smollm2-135m": Shape("llama", 30, 576, 9, 1536, 49152, "bpe", n_kv_heads=3, rope_theta=100000.0,
                          max_positions=8192),
}


def shaped_backbone(name: str, *, vocab_size: int | None = None, mlp_size: int | None = None,
                    seed: int = 0) -> Backbone:
    """A random backbone shaped like `name` (a key of SHAPES), eval mode, frozen, named `name`.

    vocab_size: None keeps the real vocabulary (never below the tokenizer's size);
    mlp_size: None keeps the real MLP width.
    """
    shape = SHAPES[name]
    tok = bert_char_tokenizer() if shape.tokenizer == "bert" else byte_tokenizer(with_pad=False)
    vocab = max(len(tok), vocab_size if vocab_size is not None else shape.vocab)
    mlp = mlp_size if mlp_size is not None else shape.mlp
    if shape.family == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_positions=shape.max_positions, n_embd=shape.hidden,
                         n_layer=shape.n_layers, n_head=shape.n_heads, n_inner=mlp)
        factory = GPT2LMHeadModel
    else:
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=shape.hidden, intermediate_size=mlp,
                          num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
                          num_key_value_heads=shape.n_kv_heads, max_position_embeddings=shape.max_positions,
                          rope_theta=shape.rope_theta, rms_norm_eps=1e-5, tie_word_embeddings=True)
        factory = LlamaForCausalLM
    cfg.use_cache = False
    with torch.device("meta"):
        model = factory(cfg)
    model = model.to_empty(device="cpu")
    _fill(model, seed)
    if shape.family == "llama":  # its rotary table is a computed buffer, empty after to_empty
        model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg)
    model.tie_weights()
    backbone = Backbone(model=model.eval(), tokenizer=tok, name=name)
    backbone.freeze()
    return backbone


_POOL = 4093  # a prime (rows of a matrix do not repeat with its width), small enough to stay in cache


@torch.no_grad()
def _fill(model: torch.nn.Module, seed: int) -> None:
    pool = torch.randn(_POOL, generator=torch.Generator().manual_seed(seed)) * 0.02
    for name, p in model.named_parameters():
        if p.ndim == 1:  # norm weights 1; biases (and norm biases) 0
            p.fill_(0.0 if name.endswith("bias") else 1.0)
            continue
        flat = p.view(-1)
        k, rest = divmod(flat.numel(), _POOL)
        flat[: k * _POOL].view(k, _POOL).copy_(pool.expand(k, _POOL))  # one copy from the cached pool
        flat[k * _POOL:].copy_(pool[:rest])
