"""Tiny random GPT-2 and Llama backbones built in code, for tests and smoke runs (no files, no network).

The tokenizer is a byte-level BPE with no merges (one token per byte): built in code with the
`tokenizers` library, so every string tokenises and nothing has to be downloaded. `bert_char_tokenizer`
is the other kind a backbone may ship: a character-level WordPiece BertTokenizer with [PAD] and no
eos, laid out like the SIMS backbone's (uer/gpt2-chinese-cluecorpussmall).
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import BertTokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .adapter import Backbone

TINY_NAMES = ("tiny-gpt2", "tiny-llama")
EOS = "<|endoftext|>"


def byte_tokenizer(*, with_pad: bool = True) -> PreTrainedTokenizerFast:
    """256 byte tokens + one end-of-text token (id 256), pad = eos as in the authors' code.

    with_pad=False leaves pad unset, as GPT-2's and SmolLM2's own tokenizers ship.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS if with_pad else None)
    fast.padding_side = "right"
    return fast


# bert-base-chinese's layout: [PAD]=0, [unused1..99], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
_BERT_SPECIALS = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_CJK = range(0x4E00, 0x9FA6)  # the CJK Unified Ideographs bert-base-chinese covers, one token each


def bert_char_tokenizer() -> BertTokenizer:
    """A BertTokenizer with no eos token: [PAD] = 0, [CLS] text [SEP], one token per Chinese character.

    Vocabulary (21,162 entries; the real one has 21,128): the specials, printable ASCII and their
    `##` continuations, and every CJK ideograph in U+4E00..U+9FA5. Built from a dict, no files.
    """
    ascii_chars = [chr(c) for c in range(33, 127)]
    words = [*_BERT_SPECIALS, *ascii_chars, *(f"##{c}" for c in ascii_chars if c.isalnum()), *map(chr, _CJK)]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


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
