"""Tokenizers without eos (BERT-style, the SIMS backbone's) or without pad (GPT-2's), and
`inspect_backbone`: the config + tokenizer of a backbone, read without its weights."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from deepmlf.backbones import Backbone, inspect_backbone, load_backbone, prepare_tokenizer
from deepmlf.backbones.tiny import bert_char_tokenizer, byte_tokenizer
from deepmlf.config import config_from_dict
from deepmlf.data.dataset import MSACollate
from deepmlf.errors import BackboneError
from deepmlf.model import build_model
from deepmlf.model.deepmlf import next_token_targets

from .backbone_helpers import put_in_hf_cache


def _gpt2_with(tokenizer, *, n_layers: int = 2, hidden: int = 32) -> Backbone:
    """A tiny random GPT-2 whose vocabulary covers `tokenizer` (the Chinese GPT-2's layout: GPT-2 + BertTokenizer)."""
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=hidden, n_layer=n_layers, n_head=4)
    return Backbone(model=GPT2LMHeadModel(cfg).eval(), tokenizer=tokenizer, name="tiny-gpt2-chinese")


def test_bert_tokenizer_gets_pad_as_eos_and_gpt2_tokenizer_eos_as_pad():
    bert = prepare_tokenizer(bert_char_tokenizer(), "bert")
    assert bert.eos_token == bert.pad_token == "[PAD]" and bert.eos_token_id == bert.pad_token_id == 0
    bpe = prepare_tokenizer(byte_tokenizer(with_pad=False), "bpe")
    assert bpe.pad_token == bpe.eos_token == "<|endoftext|>" and bpe.pad_token_id == 256
    assert bert.padding_side == bpe.padding_side == "right"


def test_tokenizer_with_neither_eos_nor_pad_is_refused():
    tok = bert_char_tokenizer()
    tok.pad_token = None
    with pytest.raises(BackboneError, match="backbone 'x': its tokenizer .* has neither an eos nor a pad token"):
        prepare_tokenizer(tok, "x")


def test_deepmlf_builds_and_trains_on_a_bert_tokenizer():
    """The SIMS case: a GPT-2 with a BertTokenizer ([CLS] text [SEP], [PAD], no eos) builds, and the
    last real token ([SEP]) learns to predict [PAD] (id 0), as in the authors' code."""
    backbone = _gpt2_with(bert_char_tokenizer())
    cfg = config_from_dict({
        "model": {"backbone": "x", "mm_layers": [1], "n_fusion": 2, "n_heads": 4, "head_hidden": 8,
                  "augment": {"kind": "none"},
                  "av_encoder": {"d_av": 8, "av_len": 3, "n_layers": 1, "n_heads": 2, "init": "random_tune"}},
        "data": {"max_text_len": 12}, "loss": {"lambda_lm": 1.0},
    })
    model = build_model(cfg, audio_dim=3, vision_dim=4, backbone=backbone)
    assert model.eos_token_id == 0
    collate = MSACollate(backbone.tokenizer, max_text_len=12)
    samples = [
        {"raw_text": text, "audio": torch.randn(5, 3).numpy(), "audio_length": 5, "vision": torch.randn(4, 4).numpy(),
         "vision_length": 4, "label": y, "id": str(i)}
        for i, (text, y) in enumerate([("这个电影我很喜欢", 0.8), ("太无聊了", -0.6)])
    ]
    batch = collate(samples)
    cls, sep = backbone.tokenizer.cls_token_id, backbone.tokenizer.sep_token_id
    assert batch.input_ids[:, 0].tolist() == [cls, cls]
    assert batch.attention_mask.sum(1).tolist() == [10, 6]  # [CLS] + one token per character + [SEP]
    assert batch.input_ids[0, 9].item() == sep and batch.input_ids[1, 6:].eq(0).all()  # right-padded with [PAD]
    targets = next_token_targets(batch.input_ids, batch.attention_mask, model.eos_token_id)
    assert targets[0, 9].item() == 0 and targets[1, 5].item() == 0  # [SEP] -> [PAD]
    assert targets[1, 6:].eq(-100).all()
    model.train()
    out = model(batch)
    assert out.lm_logits.shape == (2, 12, len(backbone.tokenizer)) and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.lm.fusion_tokens.grad is not None


def test_inspect_reads_config_and_tokenizer_without_the_weights(tmp_path, offline_env, monkeypatch):
    backbone = _gpt2_with(bert_char_tokenizer(), n_layers=3)
    put_in_hf_cache(offline_env["hf_cache"], "uer/gpt2-chinese-cluecorpussmall", lambda d: (
        backbone.model.save_pretrained(d), bert_char_tokenizer().save_pretrained(d)))  # as shipped: no eos
    loaded = load_backbone("uer/gpt2-chinese-cluecorpussmall")
    assert type(loaded.tokenizer).__name__ == "BertTokenizer" and loaded.tokenizer.eos_token == "[PAD]"

    def no_weights(*args, **kwargs):
        raise AssertionError("inspect_backbone loaded the weights")

    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_weights)
    spec = inspect_backbone("uer/gpt2-chinese-cluecorpussmall")
    assert (spec.model_type, spec.n_layers, spec.hidden_size, spec.max_positions) == ("gpt2", 3, 32, 64)
    assert spec.eos_token_id == spec.pad_token_id == 0  # [PAD] serves as eos
    with pytest.raises(BackboneError, match="cannot resolve backbone 'uer/gpt2-chinese-small' offline"):
        inspect_backbone("uer/gpt2-chinese-small")


def test_inspect_tiny_backbone_matches_the_loaded_one():
    for name in ("tiny-gpt2", "tiny-llama"):
        spec, loaded = inspect_backbone(name), load_backbone(name).spec()
        assert (spec.n_layers, spec.hidden_size, spec.max_positions, spec.eos_token_id) == (
            loaded.n_layers, loaded.hidden_size, loaded.max_positions, loaded.eos_token_id)
    assert inspect_backbone("tiny-llama").max_positions is None  # rotary: no position table
