"""Tiny random GPT-2 and Llama backbones built in code, for tests and smoke runs (no files, no network).

The tokenizer is a byte-level BPE with no merges (one token per byte): built in code with the
`tokenizers` library, so every string tokenises and nothing has to be downloaded.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .adapter import Backbone

TINY_NAMES = ("tiny-gpt2", "tiny-llama")
EOS = "<|endoftext|>"


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """256 byte tokens + one end-of-text token (id 256), pad = eos as in the authors' code."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.padding_side = "right"
    return fast


def tiny_gpt2(*, n_layers: int = 4, hidden: int = 32, n_heads: int = 4, seed: int = 0) -> Backbone:
    tok = byte_tokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=256, n_embd=hidden, n_layer=n_layers, n_head=n_heads,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return Backbone(model=GPT2LMHeadModel(cfg).eval(), tokenizer=tok, name="tiny-gpt2")


def tiny_llama(*, n_layers: int = 4, hidden: int = 32, n_heads: int = 4, seed: int = 0) -> Backbone:
    tok = byte_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden + 8, num_hidden_layers=n_layers,
        num_attention_heads=n_heads, num_key_value_heads=max(1, n_heads // 2), max_position_embeddings=256,
        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return Backbone(model=LlamaForCausalLM(cfg).eval(), tokenizer=tok, name="tiny-llama")


def tiny_backbone(name: str, **kwargs) -> Backbone:
    if name == "tiny-gpt2":
        return tiny_gpt2(**kwargs)
    if name == "tiny-llama":
        return tiny_llama(**kwargs)
    raise KeyError(name)
