"""The `perf` switches (issue 14) over tiny GPT-2 and Llama: each exact one leaves outputs and
gradients equal to the reference path (<= 1e-5), and does what it says (no full logits, cache hits,
fewer stored activations)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from deepmlf.config import PerfConfig
from deepmlf.data.batch import Batch
from deepmlf.model import build_model
from deepmlf.model.perf import apply_perf, fuse_tanh_gelu

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config

HEADS = ("y_o", "y_t", "y_av", "y_f")


def _build(new_backbone, perf: dict | None = None, **model):
    # No dropout in the MM blocks: under dynamic padding their masks are drawn over fewer positions,
    # so only the same computation (not the same random draws) can be compared.
    model.setdefault("dropout", 0.0)
    cfg = small_config(**model)
    torch.manual_seed(0)
    backbone = new_backbone()
    if perf and perf.get("fused_gelu"):
        fuse_tanh_gelu(backbone)
    m = build_model(cfg, audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=backbone)
    apply_perf(m, PerfConfig(**(perf or {})))
    for mod in m.modules():  # the copied FFWs keep GPT-2's dropout probability
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    return m


def _padded(batch: Batch, extra: int = 3) -> Batch:
    """The batch with `extra` more pad columns: no transcript fills the width."""
    B = len(batch)
    pad = torch.full((B, extra), 256, dtype=batch.input_ids.dtype)
    return dataclasses.replace(
        batch, input_ids=torch.cat([batch.input_ids, pad], 1),
        attention_mask=torch.cat([batch.attention_mask, torch.zeros_like(pad)], 1),
    )


def _step(model, batch, *, train: bool = True, seed: int = 1):
    model.train(train)
    torch.manual_seed(seed)
    out = model(batch)
    grads = {}
    if train:
        model.zero_grad(set_to_none=True)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def _assert_same(a, b, ga=None, gb=None, *, atol=1e-5, rtol=1e-4):
    for name in HEADS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=rtol, msg=name)
    for name in a.loss_terms:
        torch.testing.assert_close(a.loss_terms[name], b.loss_terms[name], atol=atol, rtol=rtol, msg=name)
    if ga is not None:
        assert ga.keys() == gb.keys() and "lm.fusion_tokens" in ga
        for name in ga:
            torch.testing.assert_close(ga[name], gb[name], atol=atol, rtol=rtol, msg=name)


@pytest.mark.parametrize("augment", [{"kind": "none"}, {"kind": "seqaug", "p_apply": 1.0, "permutation": "per_batch"},
                                     {"kind": "seqaug", "p_apply": 1.0, "permutation": "per_sample"}])
def test_dynamic_padding_is_exact(new_backbone, augment):
    batch = _padded(make_batch(B=4, T=7, seed=3))
    ref_model = _build(new_backbone, augment=augment)
    ref, gr = _step(ref_model, batch)
    model = _build(new_backbone, {"dynamic_padding": True}, augment=augment)
    calls = []
    model.lm.backbone.layers[-1].register_forward_hook(lambda m, a, o: calls.append(a[0].shape[1]))
    out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)
    assert calls == [7 + 3]  # longest transcript 7 (not 10) + 3 fusion tokens
    assert out.lm_logits.shape[1] == 7
    torch.testing.assert_close(out.lm_logits, ref.lm_logits[:, :7], atol=1e-5, rtol=1e-4)
    # Evaluation too (after the same step: the task head's BatchNorm statistics moved alike).
    _assert_same(_step(model, batch, train=False)[0], _step(ref_model, batch, train=False)[0])


def test_chunked_lm_loss_is_exact_and_returns_no_logits(new_backbone, monkeypatch):
    import deepmlf.model.multimodal_lm as mlm

    batch = make_batch(B=4, T=7, seed=4)
    ref, gr = _step(_build(new_backbone), batch)
    model = _build(new_backbone, {"lm_loss_chunk": 5})
    head_w = model.lm.backbone.lm_head.weight
    seen = []
    linear = mlm.F.linear
    monkeypatch.setattr(mlm.F, "linear", lambda x, w, b=None: (seen.append(x.shape[0]) if w is head_w else None)
                        or linear(x, w, b))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
        out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)
    assert out.lm_logits is None
    n_real = int(batch.attention_mask.sum())  # 7+3+5+1 = 16 real tokens: chunks 5, 5, 5, 1
    assert seen == [5, 5, 5, 1] and sum(seen) == n_real  # forward only: backward recomputes nothing
    V = head_w.shape[0]
    assert not [sh for sh in saved if len(sh) == 2 and sh[1] == V and sh[0] != head_w.shape[1]]  # no logits kept


def test_chunked_lm_loss_with_bf16_autocast_recomputes_chunks(new_backbone):
    # Under autocast the chunks go through the head module, checkpointed (logits recomputed in backward).
    batch = make_batch(B=4, T=7, seed=4)
    ref, _ = _step(_build(new_backbone, {"autocast": "bf16"}), batch)
    model = _build(new_backbone, {"lm_loss_chunk": 5, "autocast": "bf16"})
    seen = []
    model.lm.backbone.lm_head.register_forward_hook(lambda m, a, o: seen.append(o.shape[0]))
    out, _ = _step(model, batch)
    assert seen[:4] == [5, 5, 5, 1] and len(seen) == 8  # forward chunks, then their recomputation
    torch.testing.assert_close(out.loss_terms["lm"], ref.loss_terms["lm"], atol=0.05, rtol=0.01)


def test_chunked_head_ce_matches_autograd_with_a_bias():
    from deepmlf.model.multimodal_lm import _ChunkedHeadCE

    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(50, 8, generator=g), torch.randn(50, generator=g)
    x = torch.randn(11, 8, generator=g, requires_grad=True)
    y = torch.randint(0, 50, (11,), generator=g)
    (3 * _ChunkedHeadCE.apply(x, w, b, y, 4, True)).backward()
    got = x.grad.clone()
    x.grad = None
    ref = F.cross_entropy(F.linear(x, w, b), y, reduction="sum")
    (3 * ref).backward()
    torch.testing.assert_close(got, x.grad, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(_ChunkedHeadCE.apply(x, w, b, y, 4, False), ref.detach())


@pytest.mark.parametrize("dynamic", [False, True])
def test_prefix_cache_is_exact_and_reused(new_backbone, dynamic):
    batches = [_padded(make_batch(B=4, T=7, seed=s)) for s in (5, 6)]
    perf = {"prefix_cache": True, "dynamic_padding": dynamic}
    ref_model, model = _build(new_backbone), _build(new_backbone, perf)
    cache = model.lm.prefix_cache
    first_layer = model.lm.backbone.layers[0].layer
    calls = []
    first_layer.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[1]))
    for epoch in range(2):
        for b in batches:
            ref, gr = _step(ref_model, b)
            out, go = _step(model, b)
            _assert_same(out, ref, go, gr)
    assert len(cache) == 8 and cache.misses == 8 and cache.hits == 8
    # Epoch 1: text rows (the longest missing transcript) then the 3 fusion tokens; epoch 2: fusion only.
    assert calls == [7, 3, 7, 3, 3, 3]
    # Evaluation reads the same entries, and gives the reference's numbers.
    calls.clear()
    for b in batches:
        _assert_same(_step(model, b, train=False)[0], _step(ref_model, b, train=False)[0])
    assert calls == [3, 3] and cache.hits == 16


def test_prefix_cache_is_bypassed_when_states_are_random(new_backbone):
    batch = make_batch(B=4, T=7, seed=7)
    model = _build(new_backbone, {"prefix_cache": True}, augment={"kind": "seqaug", "p_apply": 1.0})
    _step(model, batch)
    assert len(model.lm.prefix_cache) == 0 and model.lm.prefix_cache.misses == 0  # augmented batch
    model = _build(new_backbone, {"prefix_cache": True}, backbone_dropout=True)
    _step(model, batch)
    assert model.lm.prefix_cache.misses == 0  # backbone dropout on in training
    _step(model, batch, train=False)
    assert model.lm.prefix_cache.misses == 4  # evaluation: no dropout, cached


def test_prefix_cache_is_bounded(new_backbone):
    batch = make_batch(B=4, T=7, seed=8)
    ref, gr = _step(_build(new_backbone), batch)
    model = _build(new_backbone, {"prefix_cache": True})
    model.lm.prefix_cache.max_bytes = 1  # nothing fits: every row is computed, results unchanged
    out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)
    assert len(model.lm.prefix_cache) == 0 and model.lm.prefix_cache.nbytes == 0


def test_prefix_cache_is_keyed_by_autocast_state(new_backbone):
    batch = make_batch(B=4, T=7, seed=9)
    model = _build(new_backbone, {"prefix_cache": True})
    _step(model, batch, train=False)
    model.lm.autocast_mode = "bf16"
    _step(model, batch, train=False)
    assert len(model.lm.prefix_cache) == 8  # fp32 and bf16-autocast entries kept apart


def test_prefix_cache_filled_in_inference_mode_trains(new_backbone):
    batch = make_batch(B=4, T=7, seed=10)
    ref, gr = _step(_build(new_backbone), batch)
    model = _build(new_backbone, {"prefix_cache": True}).eval()
    with torch.inference_mode():
        model(batch)
    out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)
    assert model.lm.prefix_cache.hits == 4


def test_fused_gelu_is_exact():
    from deepmlf.backbones.tiny import tiny_gpt2

    batch = make_batch(B=4, T=7, seed=11)
    ref, gr = _step(_build(tiny_gpt2), batch)
    model = _build(tiny_gpt2, {"fused_gelu": True})
    acts = [m for m in model.modules() if type(m).__name__ in ("NewGELUActivation", "GELUTanh")]
    fused = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    assert not acts and fused and all(m.approximate == "tanh" for m in fused)
    out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)


def test_fused_gelu_leaves_llama_alone():
    from deepmlf.backbones.tiny import tiny_llama

    assert fuse_tanh_gelu(tiny_llama()) == 0


def _build_with_dropout(new_backbone, perf):
    """MM layers 1 and 3, every dropout (MM blocks, backbone) at p = 0.1."""
    m = _build(new_backbone, perf, mm_layers=[1, 3], backbone_dropout=True)
    for mod in m.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.1
    return m


def test_checkpoint_frozen_is_exact_with_dropout(new_backbone):
    # Checkpointing replays the RNG state, so even with dropout (MM blocks, backbone) it is exact.
    batch = make_batch(B=4, T=7, seed=12)

    def build(perf):
        return _build_with_dropout(new_backbone, perf)

    ref, gr = _step(build({}), batch)
    model = build({"checkpoint_frozen": True})
    wrapped = [type(layer).__name__ for layer in model.lm.backbone.layers]
    assert wrapped[2] == "CheckpointedLayer" and model.lm.backbone.layers[3].checkpoint
    out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)
    model.lm.set_checkpoint_frozen(False)
    assert type(model.lm.backbone.layers[2]).__name__ != "CheckpointedLayer"


def test_checkpoint_frozen_stores_fewer_activations(new_backbone):
    batch = make_batch(B=4, T=7, seed=13)

    def saved_bytes(model) -> int:
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(batch)
        return sum(total)

    assert saved_bytes(_build(new_backbone, {"checkpoint_frozen": True}, mm_layers=[0, 3])) < \
        saved_bytes(_build(new_backbone, mm_layers=[0, 3]))


def test_all_exact_switches_together(new_backbone):
    batch = _padded(make_batch(B=4, T=7, seed=14))
    perf = {"dynamic_padding": True, "lm_loss_chunk": 4, "prefix_cache": True, "checkpoint_frozen": True,
            "fused_gelu": True, "pack_tokens": True}
    ref_model, model = _build(new_backbone), _build(new_backbone, perf)
    for _ in range(2):
        ref, gr = _step(ref_model, batch)
        out, go = _step(model, batch)
        _assert_same(out, ref, go, gr)


def test_bf16_autocast_is_close_and_keeps_master_weights_float32(new_backbone):
    batch = make_batch(B=4, T=7, seed=15)
    ref, _ = _step(_build(new_backbone), batch)
    model = _build(new_backbone, {"autocast": "bf16"})
    out, go = _step(model, batch)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    assert all(g.dtype == torch.float32 for g in go.values())
    for name in HEADS:
        assert getattr(out, name).dtype == torch.float32
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=0.1, rtol=0.1)
    assert not torch.equal(out.y_o, ref.y_o)  # it is on: bf16 rounding shows


def test_autocast_modes():
    from deepmlf.model.perf_switches import resolve_autocast

    assert resolve_autocast("off", "cpu") is False and resolve_autocast("bf16", "cpu") is True
    assert isinstance(resolve_autocast("auto", "cpu"), bool)


def test_perf_defaults_are_off():
    p = PerfConfig()
    assert not (p.dynamic_padding or p.lm_loss_chunk or p.prefix_cache or p.fused_gelu or p.checkpoint_frozen
                or p.inference_mode or p.pack_tokens or p.fused_adamw) and p.autocast == "off"


def test_lm_loss_chunk_matches_cross_entropy(new_backbone):
    model = _build(new_backbone)
    h = torch.randn(3, 5, model.lm.backbone.hidden_size)
    targets = torch.randint(0, 257, (3, 5))
    targets[1, 2:] = -100
    full = F.cross_entropy(model.lm.lm_logits(h).flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(model.lm.lm_loss_chunked(h, targets, 2), full)


def test_inference_mode_evaluation_gives_the_same_predictions(new_backbone):
    from deepmlf.train.evaluate import collect_predictions

    batches = [make_batch(B=4, T=7, seed=s) for s in (16, 17)]
    model = _build(new_backbone, {"inference_mode": True, "prefix_cache": True})
    assert model.eval_inference_mode
    seen = []
    model.lm.backbone.layers[0].register_forward_hook(lambda m, a, o: seen.append(torch.is_inference_mode_enabled()))
    on = collect_predictions(model, batches)  # the model's switch
    off = collect_predictions(model, batches, inference_mode=False)
    assert seen[0] and not seen[-1]
    assert on.ids == off.ids
    for a, b in [(on.prediction, off.prediction), *((on.heads[k], off.heads[k]) for k in on.heads)]:
        assert (a == b).all()
    assert on.loss_terms == off.loss_terms


def test_build_model_applies_the_perf_section(new_backbone):
    from deepmlf.config import config_from_dict

    tree = small_config().to_dict()
    tree["perf"] = {"dynamic_padding": True, "lm_loss_chunk": 8, "prefix_cache": True, "prefix_cache_mb": 3,
                    "autocast": "auto", "checkpoint_frozen": True, "inference_mode": True, "pack_tokens": True}
    m = build_model(config_from_dict(tree), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone())
    assert m.lm.dynamic_padding and m.lm_loss_chunk == 8 and m.lm.prefix_cache.max_bytes == 3 * 2**20
    assert m.lm.autocast_mode == "auto" and m.eval_inference_mode
    assert any(type(layer).__name__ == "CheckpointedLayer" for layer in m.lm.backbone.layers)
    assert m.lm.pack_tokens


def test_checkpoint_frozen_with_the_text_cache(new_backbone):
    # model.text_cache runs the fusion tokens against a KV cache: those layers are not checkpointed
    # (a recompute would append to the cache twice); the numbers stay the reference's.
    batch = make_batch(B=4, T=7, seed=18)
    kw = {"ffw_tokens": "fusion", "text_cache": True}
    ref, gr = _step(_build(new_backbone, **kw), batch)
    out, go = _step(_build(new_backbone, {"checkpoint_frozen": True}, **kw), batch)
    _assert_same(out, ref, go, gr)


# ----------------------------------------------------------------------------- perf.pack_tokens
def _mlp_rows(model) -> list[int]:
    """Rows each frozen MLP and each MM block's FFW computes on, in call order (a hook on each)."""
    from deepmlf.model.multimodal_lm import _decoder_layer

    rows: list[int] = []
    lm = model.lm
    mods = [_decoder_layer(layer).get_submodule(lm.backbone.family.mlp) for layer in lm.backbone.layers]
    mods += [block.ffw for _, block in lm.mm_blocks() if block.ffw is not None]
    for m in mods:
        m.register_forward_hook(lambda m, a, o: rows.append(a[0].reshape(-1, a[0].shape[-1]).shape[0]))
    return rows


def _empty_row(batch: Batch, row: int = 3) -> Batch:
    """The batch with one transcript emptied (all pads): the heads read its position 0."""
    mask = batch.attention_mask.clone()
    mask[row] = 0
    return dataclasses.replace(batch, input_ids=batch.input_ids.masked_fill(mask == 0, 256), attention_mask=mask)


@pytest.mark.parametrize("model_kw", [
    {},
    {"ffw_tokens": "fusion"},
    {"gca_query": "text+fusion", "augment": {"kind": "seqaug", "p_apply": 1.0, "permutation": "per_sample"}},
])
def test_pack_tokens_is_exact(new_backbone, model_kw):
    from deepmlf.model.multimodal_lm import _decoder_layer

    batch = _empty_row(_padded(make_batch(B=4, T=7, seed=19)))
    ref_model = _build(new_backbone, **model_kw)
    ref, gr = _step(ref_model, batch)
    model = _build(new_backbone, {"pack_tokens": True}, **model_kw)
    assert model.lm.pack_tokens
    rows = _mlp_rows(model)
    out, go = _step(model, batch)
    _assert_same(out, ref, go, gr)
    real = batch.attention_mask.bool()
    torch.testing.assert_close(out.lm_logits[real], ref.lm_logits[real], atol=1e-5, rtol=1e-4)
    # Text width 10, real 7+3+5+0 = 15, + position 0 of the emptied row = 16; 3 fusion tokens per row.
    # Training: the text (16 rows) through layers 0-1, the fusion tokens (12), then all above (28).
    assert rows[:4] == [16, 16, 12, 12] and max(rows) == 16 + 12 and 4 * (10 + 3) not in rows
    # The attention projections are packed too (the first one of the last layer: q/k/v in).
    proj = _decoder_layer(model.lm.backbone.layers[-1]).get_submodule(model.lm.backbone.family.attn_proj[0])
    seen = []
    proj.register_forward_hook(lambda m, a, o: seen.append((a[0].shape, o.shape)))
    # Evaluation too (after the same step).
    _assert_same(_step(model, batch, train=False)[0], _step(ref_model, batch, train=False)[0])
    assert seen[0][0][0] == 16 + 12 and seen[0][1][:2] == (4, 10 + 3)  # packed in, scattered out
    model.lm.set_pack_tokens(False)
    rows.clear()
    _step(model, batch, train=False)
    assert not model.lm.pack_tokens and 4 * (10 + 3) in rows


def test_pack_tokens_with_checkpointing_replays_the_packing(new_backbone):
    # With dropout, packing draws other masks than the default path, but checkpointing must replay
    # its own forward exactly: the recomputation in backward packs the same positions.
    batch = _padded(make_batch(B=4, T=7, seed=20))

    def build(perf):
        return _build_with_dropout(new_backbone, perf)

    ref, gr = _step(build({"pack_tokens": True}), batch)
    out, go = _step(build({"pack_tokens": True, "checkpoint_frozen": True}), batch)
    _assert_same(out, ref, go, gr)
    # And against the default path without dropout.
    ref, gr = _step(_build(new_backbone, mm_layers=[1, 3]), batch)
    out, go = _step(_build(new_backbone, {"pack_tokens": True, "checkpoint_frozen": True}, mm_layers=[1, 3]), batch)
    _assert_same(out, ref, go, gr)


def test_pack_tokens_with_the_text_cache(new_backbone):
    batch = make_batch(B=4, T=7, seed=21)
    kw = {"ffw_tokens": "fusion", "text_cache": True}
    ref_model, model = _build(new_backbone, **kw), _build(new_backbone, {"pack_tokens": True}, **kw)
    rows = _mlp_rows(model)
    for _ in range(2):  # a miss (the text pass, packed), then a hit
        ref, gr = _step(ref_model, batch)
        out, go = _step(model, batch)
        _assert_same(out, ref, go, gr)
    assert rows[:4] == [7 + 3 + 5 + 1] * 4  # the text pass through the 4 layers: real tokens only


def test_pack_tokens_with_a_rationale_suffix(new_backbone):
    from deepmlf.backbones.tiny import byte_tokenizer
    from deepmlf.model.rationale import tokenize_rationales

    def build(pack, readout="none", **model):
        torch.manual_seed(0)
        r = {"enabled": True, "path": "teacher.jsonl", "max_len": 12, "suffix_ffw": True,
             "readout": readout, "readout_gate_init": 0.5}
        m = build_model(small_config(rationale=r, dropout=0.0, **model), audio_dim=AUDIO_DIM,
                        vision_dim=VISION_DIM, backbone=new_backbone())
        m.lm.set_pack_tokens(pack)
        return m.eval()  # no dropout anywhere; gradients still flow

    texts = ["Text: positive. Prediction: -1.3", "Voice: sincere", "Prediction: 2.0", None]
    # model.rationale.readout: fusion too (the suffix reads each MM layer's fusion states).
    for readout, model_kw in (("none", {}), ("none", {"ffw_tokens": "fusion"}), ("fusion", {"ffw_tokens": "fusion"})):
        results = []
        for pack in (False, True):
            model = build(pack, readout, **model_kw)
            b = make_batch(B=4, T=7, seed=22)
            b.rationale_ids, b.rationale_mask = tokenize_rationales(byte_tokenizer(), texts, 12)
            model.zero_grad()
            out = model(b)
            out.loss.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            _, ids = model.explain(make_batch(B=4, T=7, seed=22), max_len=5)
            results.append((out, grads, ids, b.rationale_mask.bool()))
        (ref, gr, ids_ref, real), (got, go, ids, _) = results
        torch.testing.assert_close(got.rationale_logits[real], ref.rationale_logits[real], atol=1e-5, rtol=1e-4)
        for name in (*HEADS, "loss"):
            torch.testing.assert_close(getattr(got, name), getattr(ref, name), atol=1e-5, rtol=1e-4, msg=name)
        assert gr.keys() == go.keys() and gr
        for n in gr:
            torch.testing.assert_close(go[n], gr[n], atol=1e-5, rtol=1e-4, msg=n)
        assert torch.equal(ids, ids_ref)  # greedy decoding from the packed pass's KV cache


def test_pack_tokens_under_bf16_autocast(new_backbone):
    # Packing under autocast: the packed rows are the same bf16 computations (close, not bitwise:
    # bf16 matmuls of another row count may round differently), and the pads' dtype mix is handled.
    batch = _padded(make_batch(B=4, T=7, seed=23))
    ref, gr = _step(_build(new_backbone, {"autocast": "bf16"}), batch)
    out, go = _step(_build(new_backbone, {"autocast": "bf16", "pack_tokens": True}), batch)
    _assert_same(out, ref, go, gr, atol=2e-2, rtol=2e-2)


def test_fused_adamw_is_exact(new_backbone):
    # perf.fused_adamw: the same AdamW update as the per-parameter loop, to float rounding (weight
    # decay, the AV groups' own rate, bias correction), over several steps.
    from deepmlf.config import TrainConfig
    from deepmlf.train.optim import build_optimizer

    cfg = TrainConfig(lr=1e-2, lr_av=5e-3, weight_decay=0.1)
    batches = [_padded(make_batch(B=4, T=7, seed=s)) for s in (20, 21, 22)]
    models = {fused: _build(new_backbone) for fused in (False, True)}
    start = {n: p.detach().clone() for n, p in models[False].named_parameters()}
    opts = {fused: build_optimizer(m, cfg, av_module=m.av_encoder, fused=fused) for fused, m in models.items()}
    assert all(g["fused"] for g in opts[True].param_groups) and not any(g["fused"] for g in opts[False].param_groups)
    real_grad = {}
    for k, batch in enumerate(batches):
        outs = {}
        for fused, m in models.items():
            outs[fused], grads = _step(m, batch)
            opts[fused].step()
        _assert_same(outs[True], outs[False])
        ref = dict(models[False].named_parameters())
        if k == 0:  # the same gradients, one update: every parameter within rounding
            for name, p in models[True].named_parameters():
                torch.testing.assert_close(p, ref[name], atol=1e-6, rtol=1e-5, msg=name)
            real_grad = {n: g.abs() > 1e-6 for n, g in grads.items()}
    # Later steps see gradients that differ by rounding. Where the gradient is 0 in exact arithmetic
    # (the key bias of the AV encoder's attention, the bias before the task head's BatchNorm) it is
    # rounding noise, which Adam scales to ±lr whatever its size: those elements follow no update
    # rule and are not compared (they change no output, compared above).
    moved = 0
    for name, p in models[True].named_parameters():
        if name in real_grad:
            m = real_grad[name]
            torch.testing.assert_close(p[m], ref[name][m], atol=1e-5, rtol=1e-4, msg=name)
            moved += not torch.equal(p, start[name])
    assert moved and sum(int((~m).sum()) for m in real_grad.values()) < 0.05 * sum(m.numel() for m in real_grad.values())
