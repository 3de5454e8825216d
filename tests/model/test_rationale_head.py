"""The rationale head battery over tiny GPT-2 and Llama: off = DeepMLF, causality, AV path, greedy decoding."""

from __future__ import annotations

import pytest
import torch

from deepmlf.backbones.tiny import byte_tokenizer
from deepmlf.errors import ConfigError
from deepmlf.model import DeepMLF, build_model
from deepmlf.model.rationale import RationaleCollate, RationaleDeepMLF, tokenize_rationales

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config

RATIONALES = ["Text: positive. Voice: sarcastic. Prediction: -1.3", "Text: negative. Prediction: -2.0",
              "Voice: sincere", None]


READOUT = {"readout": "fusion", "readout_gate_init": 1.0}  # model.rationale.readout, its gates open


def _build(new_backbone, *, rationale=None, **model):
    torch.manual_seed(0)
    r = {"enabled": True, "path": "teacher.jsonl", "max_len": 12, **(rationale or {})}
    return build_model(small_config(rationale=r, **model), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM,
                       backbone=new_backbone())


def _with_rationales(batch, max_len=12):
    batch.rationale_ids, batch.rationale_mask = tokenize_rationales(byte_tokenizer(), RATIONALES[: len(batch)], max_len)
    return batch


def test_off_builds_plain_deepmlf_and_on_without_rationales_equals_it(new_backbone):
    torch.manual_seed(0)
    plain = build_model(small_config(), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone()).eval()
    assert type(plain) is DeepMLF
    model = _build(new_backbone).eval()
    assert isinstance(model, RationaleDeepMLF)
    assert set(model.trainable_state_dict()) == set(plain.trainable_state_dict())  # no new weights without LoRA
    model.load_trainable_state_dict(plain.trainable_state_dict())
    b = make_batch()
    a, o = plain(b), model(b)
    for name in ("y_o", "y_t", "y_av", "y_f", "lm_logits", "loss"):
        assert torch.equal(getattr(a, name), getattr(o, name)), name
    assert o.rationale_logits is None and set(o.loss_terms) == set(a.loss_terms)


@pytest.mark.parametrize("readout", ["none", "fusion"])
@pytest.mark.parametrize("lora", [0, 2])
def test_suffix_leaves_text_states_and_heads_unchanged(new_backbone, lora, readout):
    # readout=fusion: the suffix also reads each MM layer's fusion states (READOUT's gates open).
    extra = READOUT if readout == "fusion" else {}
    model = _build(new_backbone, rationale={**extra, "lora_layers": lora}, mm_layers=[1, 2]).eval()
    if lora:  # LoRA B starts at zero: make it do something, so the test would see a leak
        for p in model._lora:
            torch.nn.init.normal_(p, std=0.5)
    b = make_batch()
    with torch.no_grad():
        ref = model(b)
        out = model(_with_rationales(make_batch()))
        enc = model.av_encoder.encode_batch(b)
        z = model.av_norm(enc.z)
        h_ref = model.lm(b.input_ids, b.attention_mask, z, enc.mask)
        emb, m = model._suffix(model.prompt_ids, *tokenize_rationales(byte_tokenizer(), RATIONALES, 12), 4)
        h = model.lm(b.input_ids, b.attention_mask, z, enc.mask, suffix_embeds=emb, suffix_mask=m)
    torch.testing.assert_close(h.text_hidden, h_ref.text_hidden, rtol=0, atol=1e-6)
    torch.testing.assert_close(h.fusion_hidden, h_ref.fusion_hidden, rtol=0, atol=1e-6)
    for name in ("y_t", "y_o", "y_f"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=0, atol=1e-6)
    assert out.rationale_logits.shape == (4, 12, 257)
    assert {"rationale"} <= set(out.loss_terms)
    if readout == "none":
        assert h.mm_fusion_states is None
        return
    assert sorted(h.mm_fusion_states) == [1, 2] and h.mm_fusion_states[1].shape == (4, 3, 32)
    # The read-out does act on the suffix: closing its gates changes the rationale logits.
    with torch.no_grad():
        for _, block in model.lm.mm_blocks():
            block.readout.gate.a.fill_(-30.0)  # sigmoid(-30) ~ 1e-13
        shut = model(_with_rationales(make_batch()))
    real = _with_rationales(make_batch()).rationale_mask.bool()
    assert not torch.allclose(shut.rationale_logits[real], out.rationale_logits[real], atol=1e-4)


def test_rationale_loss_trains_fusion_path(new_backbone):
    model = _build(new_backbone).train()
    model.loss_weights = type(model.loss_weights)(lambda_f=0, lambda_av=0, lambda_t=0, lambda_lm=0)
    out = model(_with_rationales(make_batch()))
    out.loss_terms["rationale"].backward()
    assert model.lm.fusion_tokens.grad is not None and model.lm.fusion_tokens.grad.abs().sum() > 0
    gca = model.lm.mm_blocks()[0][1].attn.k_proj.weight
    assert gca.grad is not None and gca.grad.abs().sum() > 0  # the text can depend on AV
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.heads.text.parameters())


def _first_logit_grad_wrt_z(model):
    b = make_batch()
    enc = model.av_encoder.encode_batch(b)
    z = model.av_norm(enc.z).detach().requires_grad_(True)
    emb, m = model._suffix(model.prompt_ids, None, None, len(b))
    h = model.lm(b.input_ids, b.attention_mask, z, enc.mask, suffix_embeds=emb, suffix_mask=m)
    logits = model.lm.lm_logits(h.suffix_hidden[:, -1:])  # the first rationale token's logits
    logits.sum().backward()
    return z.grad


def test_gates_closed_zero_gradient_open_nonzero(new_backbone):
    closed = _build(new_backbone, gate="tanh", gate_init=0.0).eval()  # tanh(0) = 0: every gate shut
    assert torch.count_nonzero(_first_logit_grad_wrt_z(closed)) == 0
    opened = _build(new_backbone, gate="tanh", gate_init=1.0).eval()
    assert torch.count_nonzero(_first_logit_grad_wrt_z(opened)) > 0


def test_greedy_decoding_is_deterministic_and_bounded(new_backbone):
    model = _build(new_backbone).eval()
    b = make_batch()
    out1, ids1 = model.explain(b)
    out2, ids2 = model.explain(b)
    assert torch.equal(ids1, ids2) and out1.rationale == out2.rationale
    assert ids1.shape[0] == 4 and 1 <= ids1.shape[1] <= 12
    _, short = model.explain(b, max_len=3)
    assert short.shape[1] <= 3 and torch.equal(short, ids1[:, : short.shape[1]])
    ref = model(b)
    torch.testing.assert_close(out1.y_o, ref.y_o, rtol=0, atol=1e-6)  # explain's heads = forward's
    assert model.generate_rationale(b) == out1.rationale


def test_greedy_decoding_matches_teacher_forced_argmax(new_backbone):
    """The KV-cache decoder and the one-pass teacher-forced forward agree token by token."""
    model = _build(new_backbone).eval()
    b = make_batch()
    _, ids = model.explain(b, max_len=6)
    eos = byte_tokenizer().eos_token_id
    full = torch.cat([ids, torch.full((4, 1), eos)], dim=1)
    b.rationale_ids, b.rationale_mask = full, torch.ones_like(full)
    with torch.no_grad():
        logits = model(b).rationale_logits  # (B, R, V)
    agree = logits.argmax(-1)[:, : ids.shape[1]]
    not_done = torch.cumsum((ids == eos).long(), 1) - (ids == eos).long() == 0  # up to the first eos
    assert torch.equal(agree[not_done], ids[not_done])


def test_label_task_and_kd_terms(new_backbone, tmp_path):
    model = _build(new_backbone, rationale={"label_task": True}).train()
    out = model(_with_rationales(make_batch()))
    assert {"rationale", "label"} <= set(out.loss_terms) and torch.isfinite(out.loss)


def test_collate_attaches_rationales():
    tok = byte_tokenizer()

    def base(samples):
        b = make_batch(B=len(samples))
        b.ids = [s["id"] for s in samples]
        return b

    coll = RationaleCollate(base, tok, {"a": "Voice: sincere", "c": "x"}, max_len=5)
    batch = coll([{"id": "a"}, {"id": "b"}, {"id": "c"}])
    assert batch.rationale_ids.shape == (3, 5)
    assert batch.rationale_mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0]]
    assert batch.rationale_ids[0].tolist() == tok(" Voi", add_special_tokens=False)["input_ids"] + [256]  # truncated, eos last


def test_backbone_layers_keeps_the_first_layers(new_backbone):
    torch.manual_seed(0)
    model = build_model(small_config(backbone_layers=2, mm_layers=[1]), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM,
                        backbone=new_backbone())
    assert len(model.lm.backbone.layers) == 2
    assert model(make_batch()).y_o.shape == (4,)
    with pytest.raises(ConfigError, match="every index must be below model.backbone_layers=2"):
        small_config(backbone_layers=2, mm_layers=[1, 3])


def test_config_errors(new_backbone):
    with pytest.raises(ConfigError, match="model.rationale.enabled needs model.rationale.path"):
        small_config(rationale={"enabled": True})
    with pytest.raises(ConfigError, match="lora_layers=3: LoRA goes on layers after the first MM block"):
        _build(new_backbone, rationale={"lora_layers": 3})


CACHED = {"text_cache": True, "fusion_trainable": False, "ffw_tokens": "fusion", "dropout": 0.0}


@pytest.mark.parametrize("lora", [0, 2])
def test_prefix_cache_equals_the_uncached_pass(new_backbone, lora):
    """model.rationale.prefix_cache: the same logits, heads, loss and gradients as one pass over
    T+K+L tokens; the second pass reads every row from the cache."""
    model = _build(new_backbone, rationale={"lora_layers": lora, "prefix_cache": True}, mm_layers=[1, 2], **CACHED)
    assert model.lm.suffix_cache is not None and not model.lm.fusion_tokens.requires_grad
    if lora:
        for p in model._lora:
            torch.nn.init.normal_(p, std=0.5)
    model.eval()  # no dropout anywhere (the AV encoder's too); gradients still flow
    results = []
    for cached in (False, True, True):
        model.lm.suffix_cache.__init__()  # empty (shared across the tests' identical backbones)
        store = model.lm.suffix_cache if cached else None
        saved, model.lm.suffix_cache = model.lm.suffix_cache, store
        model.zero_grad()
        b = _with_rationales(make_batch())
        out = model(b)
        if cached:
            out = model(_with_rationales(make_batch()))  # a second pass: all hits
            assert (store.hits, store.misses) == (4, 4)  # the row without a rationale: prompt only
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
        model.lm.suffix_cache = saved
    (ref, g_ref), (got, g_got), _ = results
    real = _with_rationales(make_batch()).rationale_mask.bool()
    torch.testing.assert_close(got.rationale_logits[real], ref.rationale_logits[real], rtol=1e-5, atol=1e-5)
    for name in ("y_o", "y_t", "y_f", "loss"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-5, atol=1e-5)
    assert set(g_got) == set(g_ref) and len(g_ref) > 0
    for n in g_ref:
        torch.testing.assert_close(g_got[n], g_ref[n], rtol=1e-4, atol=1e-4 * float(g_ref[n].abs().max()), msg=n)


def test_prefix_cache_keys_and_config_errors(new_backbone):
    with pytest.raises(ConfigError, match="prefix_cache=true needs model.text_cache=true .* and model.fusion_trainable=false"):
        _build(new_backbone, rationale={"prefix_cache": True})
    a = _build(new_backbone, rationale={"prefix_cache": True}, mm_layers=[1], **CACHED)
    b = _build(new_backbone, rationale={"prefix_cache": True}, mm_layers=[1], **CACHED)
    assert a.lm.suffix_cache is b.lm.suffix_cache and a.lm.text_cache is b.lm.text_cache  # one backbone's states
    b.lm.fusion_tokens.data.add_(1.0)
    store = a.lm.suffix_cache
    store.__init__()
    with torch.no_grad():
        a.eval()(_with_rationales(make_batch()))
        n = len(store)
        b.eval()(_with_rationales(make_batch()))  # other fusion tokens: other entries, never a's
    assert n > 0 and len(store) == 2 * n and store.hits == 0


def test_suffix_ffw_updates_the_suffix_only_and_decodes_consistently(new_backbone):
    """model.rationale.suffix_ffw: the MM blocks' FFW on the suffix; text, fusion and heads as without
    a suffix; greedy decoding = the teacher-forced argmax; the prefix cache stays exact."""
    model = _build(new_backbone, rationale={"suffix_ffw": True, "prefix_cache": True}, mm_layers=[1, 2], **CACHED).eval()
    b = _with_rationales(make_batch())
    with torch.no_grad():
        ref = model(make_batch())
        on = model(b)
        model.lm.memory.suffix_ffw = False
        off = model(_with_rationales(make_batch()))
        model.lm.memory.suffix_ffw = True
        model.lm.suffix_cache.__init__()
        saved, model.lm.suffix_cache = model.lm.suffix_cache, None
        uncached = model(_with_rationales(make_batch()))
        model.lm.suffix_cache = saved
    real = b.rationale_mask.bool()
    assert not torch.allclose(on.rationale_logits[real], off.rationale_logits[real])
    torch.testing.assert_close(on.rationale_logits[real], uncached.rationale_logits[real], rtol=1e-5, atol=1e-5)
    for name in ("y_t", "y_o", "y_f"):
        torch.testing.assert_close(getattr(on, name), getattr(ref, name), rtol=0, atol=1e-6)
    _, ids = model.explain(make_batch(), max_len=6)
    eos = byte_tokenizer().eos_token_id
    full = torch.cat([ids, torch.full((4, 1), eos)], dim=1)
    tb = make_batch()
    tb.rationale_ids, tb.rationale_mask = full, torch.ones_like(full)
    with torch.no_grad():
        agree = model(tb).rationale_logits.argmax(-1)[:, : ids.shape[1]]
    not_done = torch.cumsum((ids == eos).long(), 1) - (ids == eos).long() == 0
    assert torch.equal(agree[not_done], ids[not_done])
    assert "rationale_lora" in model.lr_parts()


# ---------------------------------------------------------------- model.rationale.readout: fusion


def test_readout_none_is_bit_identical_to_the_default(new_backbone):
    """readout: none (the default) builds the same weights and computes the same numbers bit for bit."""
    default = _build(new_backbone).eval()
    none = _build(new_backbone, rationale={"readout": "none"}).eval()
    assert all(b.readout is None for _, b in none.lm.mm_blocks())
    sd_a, sd_b = default.trainable_state_dict(), none.trainable_state_dict()
    assert set(sd_a) == set(sd_b) and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    with torch.no_grad():
        a, b = default(_with_rationales(make_batch())), none(_with_rationales(make_batch()))
    for name in ("y_o", "y_t", "y_f", "rationale_logits", "loss"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert default.lr_parts()["readout"] == []
    on = _build(new_backbone, rationale=READOUT)
    extra = set(on.trainable_state_dict()) - set(sd_a)
    assert extra and all(".readout." in k for k in extra)
    assert {id(p) for p in on.lr_parts()["readout"]} | {id(b.readout.gate.a) for _, b in on.lm.mm_blocks()} \
        == {id(p) for n, p in on.named_parameters() if ".readout." in n}


def test_readout_reaches_av_only_through_the_mm_blocks(new_backbone):
    """MM blocks' gates shut (tanh 0), the read-out's open: the first rationale logit has exactly zero
    gradient w.r.t. the AV memory (the read-out never sees it); MM gates open: non-zero."""
    closed = _build(new_backbone, gate="tanh", gate_init=0.0, rationale=READOUT).eval()
    assert all(b.readout.gate.value() > 0.7 for _, b in closed.lm.mm_blocks())
    assert torch.count_nonzero(_first_logit_grad_wrt_z(closed)) == 0
    opened = _build(new_backbone, gate="tanh", gate_init=1.0, rationale=READOUT).eval()
    assert torch.count_nonzero(_first_logit_grad_wrt_z(opened)) > 0


def test_readout_trains_its_attention_and_gate(new_backbone):
    model = _build(new_backbone, gate="tanh", gate_init=1.0, rationale=READOUT).train()
    model.loss_weights = type(model.loss_weights)(lambda_f=0, lambda_av=0, lambda_t=0, lambda_lm=0)
    model(_with_rationales(make_batch())).loss_terms["rationale"].backward()
    for _, block in model.lm.mm_blocks():
        r = block.readout
        assert r.attn.k_proj.weight.grad.abs().sum() > 0 and r.gate.a.grad.abs() > 0


def test_readout_cached_decoding_equals_the_one_pass(new_backbone):
    """Greedy decoding with the KV cache (decode_step reading the prefix pass's fusion states)
    gives the one-pass teacher-forced logits, step by step."""
    model = _build(new_backbone, rationale=READOUT, mm_layers=[1, 2]).eval()
    b = make_batch()
    out, ids = model.explain(b, max_len=6)
    eos = byte_tokenizer().eos_token_id
    full = torch.cat([ids, torch.full((4, 1), eos)], dim=1)
    tb = make_batch()
    tb.rationale_ids, tb.rationale_mask = full, torch.ones_like(full)
    with torch.no_grad():
        ref = model(tb).rationale_logits  # (B, R, V) one pass over T+K+P+R
        # The decoder's own logits, step by step, against the one pass at the same positions.
        enc = model.av_encoder.encode_batch(b)
        z = model.av_norm(enc.z)
        emb, m = model._suffix(model.prompt_ids, None, None, 4)
        cache = model.lm.new_cache()
        lm_out = model.lm(b.input_ids, b.attention_mask, z, enc.mask, suffix_embeds=emb, suffix_mask=m, cache=cache)
        steps = [model.lm.lm_logits(lm_out.suffix_hidden[:, -1:])[:, -1]]
        attn = torch.cat([b.attention_mask.long(), m.new_ones(4, model.lm.n_fusion), m.long()], dim=1)
        for j in range(ids.shape[1] - 1):
            attn = torch.cat([attn, attn.new_ones(4, 1)], dim=1)
            pos = torch.full((4, 1), attn.shape[1] - 1, dtype=torch.long)
            h = model.lm.decode_step(model.lm.backbone.embed_tokens(ids[:, j:j + 1]), attn, pos, z, enc.mask, cache,
                                     fusion_states=lm_out.mm_fusion_states)
            steps.append(model.lm.lm_logits(h)[:, -1])
        with pytest.raises(RuntimeError, match="no fusion states of layer 1"):
            model.lm.decode_step(model.lm.backbone.embed_tokens(ids[:, :1]), attn, pos, z, enc.mask, cache)
    torch.testing.assert_close(torch.stack(steps, 1), ref[:, : ids.shape[1]], rtol=1e-5, atol=1e-5)
    agree = ref.argmax(-1)[:, : ids.shape[1]]
    not_done = torch.cumsum((ids == eos).long(), 1) - (ids == eos).long() == 0
    assert torch.equal(agree[not_done], ids[not_done])


@pytest.mark.parametrize("lora", [0, 2])
def test_readout_prefix_cache_equals_the_uncached_pass(new_backbone, lora):
    """model.rationale.prefix_cache with the read-out: logits, heads, loss and gradients of the one pass."""
    model = _build(new_backbone, rationale={**READOUT, "lora_layers": lora, "prefix_cache": True,
                                            "suffix_ffw": True}, mm_layers=[1, 2], **CACHED)
    for p in model._lora:
        torch.nn.init.normal_(p, std=0.5)
    model.eval()
    results = []
    for cached in (False, True):
        model.lm.suffix_cache.__init__()
        saved = model.lm.suffix_cache
        model.lm.suffix_cache = saved if cached else None
        model.zero_grad()
        out = model(_with_rationales(make_batch()))
        if cached:
            out = model(_with_rationales(make_batch()))  # all hits
        out.loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        model.lm.suffix_cache = saved
    (ref, g_ref), (got, g_got) = results
    real = _with_rationales(make_batch()).rationale_mask.bool()
    torch.testing.assert_close(got.rationale_logits[real], ref.rationale_logits[real], rtol=1e-5, atol=1e-5)
    for name in ("y_o", "y_t", "y_f", "loss"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-5, atol=1e-5)
    assert any(".readout." in n for n in g_ref) and set(g_got) == set(g_ref)
    for n in g_ref:
        torch.testing.assert_close(g_got[n], g_ref[n], rtol=1e-4, atol=1e-4 * float(g_ref[n].abs().max()), msg=n)
