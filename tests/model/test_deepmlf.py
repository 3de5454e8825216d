"""DeepMLF battery over tiny random GPT-2 and Llama: outputs, invariants, freezing, switches, state."""

from __future__ import annotations

import copy

import pytest
import torch

from deepmlf.errors import BackboneError, CheckpointError, ConfigError
from deepmlf.io import torch_save
from deepmlf.model import DecoderLayerWithMM, build_av_regressor, build_model, next_token_targets

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config


def _build(new_backbone, **model):
    torch.manual_seed(0)
    return build_model(small_config(**model), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone())


def test_output_shapes(new_backbone):
    model = _build(new_backbone).eval()
    b = make_batch(B=4, T=7)
    out = model(b)
    assert out.y_o.shape == out.y_t.shape == out.y_av.shape == (4,)
    assert out.y_f.shape == (4, 3)
    assert out.lm_logits.shape == (4, 7, 257)
    assert out.prediction is out.y_o
    assert set(out.loss_terms) == {"task", "f", "av", "t", "lm"}
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    for t in (out.y_o, out.y_t, out.y_av, out.y_f, out.lm_logits):
        assert t.dtype == torch.float32


def test_loss_is_eq_14(new_backbone):
    model = _build(new_backbone).eval()
    model.loss_weights = type(model.loss_weights)(lambda_f=0.4, lambda_av=0.8, lambda_t=0.3, lambda_lm=0.5)
    b = make_batch()
    out = model(b)
    y = b.labels
    lt = out.loss_terms
    torch.testing.assert_close(lt["task"], (out.y_o - y).abs().mean())
    torch.testing.assert_close(lt["f"], (out.y_f - y[:, None]).abs().mean())
    torch.testing.assert_close(lt["av"], (out.y_av - y).abs().mean())
    torch.testing.assert_close(lt["t"], (out.y_t - y).abs().mean())
    targets = next_token_targets(b.input_ids, b.attention_mask, 256)
    ce = torch.nn.functional.cross_entropy(out.lm_logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(lt["lm"], ce)
    torch.testing.assert_close(out.loss, lt["task"] + 0.4 * lt["f"] + 0.8 * lt["av"] + 0.3 * lt["t"] + 0.5 * ce)


def test_next_token_targets():
    ids = torch.tensor([[5, 6, 7, 9], [5, 6, 9, 9], [4, 9, 9, 9]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    assert next_token_targets(ids, mask, 9).tolist() == [[6, 7, 9, 9], [6, 9, -100, -100], [9, -100, -100, -100]]


def test_lm_logits_not_computed_when_lambda_is_zero(new_backbone):
    """λ_LM = 0: the vocabulary projection never runs (lm_logits None, lm_head not called); the rest
    of the output and the loss equal the λ_LM = 1 model's minus its LM term."""
    torch.manual_seed(0)
    cfg = small_config()
    cfg.loss.lambda_lm = 0.0
    model = build_model(cfg, audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone()).eval()
    calls = []
    model.lm.backbone.lm_head.register_forward_hook(lambda *args: calls.append(1))
    out = model(make_batch())
    assert out.lm_logits is None and calls == []
    assert out.loss_terms["lm"].item() == 0.0 and out.loss.requires_grad

    torch.manual_seed(0)
    with_lm = build_model(small_config(), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone()).eval()
    ref = with_lm(make_batch())
    assert ref.lm_logits.shape == (4, 7, with_lm.lm.backbone.vocab_size) and len(calls) == 0
    torch.testing.assert_close(out.y_o, ref.y_o)
    torch.testing.assert_close(out.loss, ref.loss - ref.loss_terms["lm"])


def test_unlabelled_batches_have_no_loss(new_backbone):
    model = _build(new_backbone).eval()
    out = model(make_batch(labels=False))
    assert out.loss is None and out.loss_terms == {}
    b = make_batch()
    b.labels[0] = float("nan")
    assert model(b).loss is None


def test_only_intended_parameters_get_gradients(new_backbone):
    model = _build(new_backbone, augment={"kind": "seqaug", "p_apply": 1.0})
    model.train()
    model(make_batch()).loss.backward()
    backbone_ids = {id(p) for p in model.lm.backbone_parameters()}
    for name, p in model.named_parameters():
        if id(p) in backbone_ids:
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None, name
    assert model.lm.fusion_tokens.grad.abs().sum() > 0


def test_pretrain_freeze_keeps_the_av_encoder_fixed(new_backbone):
    model = _build(new_backbone, av_encoder={"init": "pretrain_freeze"})
    model.train()
    assert not model.av_encoder.training  # frozen means eval: no dropout, fixed BN statistics
    assert all(m.training for _, block in model.lm.mm_blocks() for m in block.modules())
    model(make_batch()).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.av_encoder.parameters())
    assert model.lm.fusion_tokens.grad is not None


def test_backbone_stays_in_eval_mode(new_backbone):
    model = _build(new_backbone)
    model.train()
    layer = model.lm.backbone.layers[1]
    assert isinstance(layer, DecoderLayerWithMM)
    assert model.training and layer.mm_block.training
    assert not layer.layer.training and not model.lm.backbone_model.training


def test_backbone_dropout_switch():
    """model.backbone_dropout (authors): GPT-2's own dropout (0.1) is active in training, so two
    train-mode passes differ; eval passes equal those of the model without the switch."""
    from deepmlf.backbones.tiny import tiny_gpt2

    quiet = {"dropout": 0.0, "ffw": "off", "av_encoder": {"dropout": 0.0}}  # only the backbone's dropout can vary
    models = {}
    for on in (False, True):
        torch.manual_seed(0)
        models[on] = build_model(small_config(**quiet, backbone_dropout=on), audio_dim=AUDIO_DIM,
                                 vision_dim=VISION_DIM, backbone=tiny_gpt2())
    b = make_batch()
    # Eval first: train passes would move the task head's BatchNorm statistics apart.
    evals = [m.eval()(b) for m in (models[False], models[True], models[True])]
    for out in evals[1:]:
        torch.testing.assert_close(out.y_o, evals[0].y_o, rtol=0, atol=0)
        torch.testing.assert_close(out.lm_logits, evals[0].lm_logits, rtol=0, atol=0)
    for on, model in models.items():
        model.train()
        assert model.lm.backbone_model.training is on and model.lm.backbone.layers[0].layer.training is on
        assert not any(p.requires_grad for p in model.lm.backbone_parameters())  # frozen either way
        first, second = model(b), model(b)
        assert torch.equal(first.y_o, second.y_o) is not on
        assert torch.equal(first.lm_logits, second.lm_logits) is not on


def test_text_head_does_not_see_audio_or_video(new_backbone):
    model = _build(new_backbone).eval()
    b = make_batch()
    ref = model(b)
    ref_text = model.lm(b.input_ids, b.attention_mask, *_z(model, b)).text_hidden
    b2 = make_batch(seed=7)  # different AV, same text
    b2.input_ids, b2.attention_mask = b.input_ids, b.attention_mask
    out = model(b2)
    torch.testing.assert_close(out.y_t, ref.y_t, atol=0, rtol=0)
    torch.testing.assert_close(model.lm(b2.input_ids, b2.attention_mask, *_z(model, b2)).text_hidden, ref_text)
    torch.testing.assert_close(out.lm_logits, ref.lm_logits, atol=0, rtol=0)
    assert not torch.allclose(out.y_f, ref.y_f)  # the fusion tokens do see AV
    assert not torch.allclose(out.y_av, ref.y_av)


def test_text_query_variant_lets_text_see_av(new_backbone):
    model = _build(new_backbone, gca_query="text").eval()
    b = make_batch()
    b2 = make_batch(seed=7)
    b2.input_ids, b2.attention_mask = b.input_ids, b.attention_mask
    assert not torch.allclose(model(b).y_t, model(b2).y_t)


def _z(model, b):
    enc = model.av_encoder.encode_batch(b)
    return model.av_norm(enc.z), enc.mask


def test_av_head_does_not_see_text(new_backbone):
    model = _build(new_backbone).eval()
    b = make_batch()
    ref = model(b)
    b.input_ids = torch.randint(0, 256, b.input_ids.shape).masked_fill(b.attention_mask == 0, 256)
    out = model(b)
    torch.testing.assert_close(out.y_av, ref.y_av, atol=0, rtol=0)
    assert not torch.allclose(out.y_t, ref.y_t)


def test_padded_av_frames_do_not_change_outputs(new_backbone):
    model = _build(new_backbone).eval()
    b = make_batch()
    ref = model(b)
    for x, lengths in ((b.audio, b.audio_lengths), (b.vision, b.vision_lengths)):
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        x[pad] = 1e4
    out = model(b)
    for k in ("y_o", "y_av", "y_f", "y_t"):
        torch.testing.assert_close(getattr(out, k), getattr(ref, k))


@pytest.mark.parametrize("query", ["fusion", "text", "text+fusion"])
def test_closed_gates_give_the_frozen_lm(new_backbone, query):
    """With tanh gates at a=0 (g = 0 exactly) and copied FFWs, text states equal the frozen LM's."""
    reference = new_backbone()  # identical weights, never wrapped
    model = _build(new_backbone, gate="tanh", gate_init=0.0, ffw="full", gca_query=query).eval()
    b = make_batch()
    with torch.no_grad():
        expected = reference.model.base_model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
        logits = reference.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
        got = model.lm(b.input_ids, b.attention_mask, *_z(model, b)).text_hidden
        out = model(b)
    real = b.attention_mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.lm_logits[real], logits[real], atol=1e-4, rtol=1e-5)


SWITCHES = [
    {"gate": "sigmoid"}, {"gate": "tanh"}, {"gate": "none"},
    {"gca_query": "fusion"}, {"gca_query": "text+fusion"}, {"gca_query": "text"},
    {"ffw": "full"}, {"ffw": "lora", "lora": {"r": 4, "alpha": 8.0}}, {"ffw": "random"}, {"ffw": "off"},
    {"augment": {"kind": "seqaug", "p_apply": 1.0}}, {"augment": {"kind": "dropout", "p_apply": 1.0}},
    {"augment": {"kind": "noise", "p_apply": 1.0}}, {"augment": {"kind": "none"}},
    {"av_encoder": {"init": "random_tune"}}, {"av_encoder": {"init": "pretrain_tune"}},
    {"av_encoder": {"init": "pretrain_freeze"}}, {"av_encoder": {"batchnorm": True}},
    {"gca_scale": 16.0}, {"ffw_tokens": "fusion"}, {"fusion_init_std": "embedding"},
]


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: str(s).replace(" ", ""))
def test_every_switch_builds_and_trains_one_step(new_backbone, switch, tmp_path):
    if "init" in switch.get("av_encoder", {}) and switch["av_encoder"]["init"] != "random_tune":
        stage1 = build_av_regressor(small_config(), AUDIO_DIM, VISION_DIM)
        path = tmp_path / "stage1.pt"
        torch_save({"av_encoder": stage1.encoder.state_dict(), "config": {}}, path)
        switch = {"av_encoder": {**switch["av_encoder"], "checkpoint": str(path)}}
    model = _build(new_backbone, **switch)
    if "checkpoint" in switch.get("av_encoder", {}):
        for k, v in stage1.encoder.state_dict().items():
            assert torch.equal(model.av_encoder.state_dict()[k], v), k
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    opt = torch.optim.AdamW(trainable.values(), lr=1e-2, weight_decay=0.0)
    out = model(make_batch())
    assert torch.isfinite(out.loss)
    out.loss.backward()
    opt.step()
    with_grad = {n for n, p in trainable.items() if p.grad is not None and p.grad.abs().sum() > 0}
    changed = {n for n, p in trainable.items() if not torch.equal(p, before[n])}
    assert with_grad and with_grad <= changed
    assert any("fusion_tokens" in n for n in changed)
    assert any("mm_block" in n for n in changed)
    assert any(n.startswith("heads.task") for n in changed)
    av_trains = switch.get("av_encoder", {}).get("init") != "pretrain_freeze"
    assert any(n.startswith("av_encoder") for n in changed) == av_trains
    if switch.get("ffw") == "lora":
        assert all("lora_" in n for n in changed if ".ffw." in n)
    if switch.get("gate") == "none":
        assert not any(n.endswith("gate_attn.a") for n in trainable)


def test_mm_block_after_the_first_and_last_layer(new_backbone):
    model = _build(new_backbone, mm_layers=[0, 3]).eval()
    assert [i for i, _ in model.lm.mm_blocks()] == [0, 3]
    assert torch.isfinite(model(make_batch()).loss)


def test_bad_mm_layers_names_the_key(new_backbone):
    with pytest.raises(ConfigError, match=r"model\.mm_layers=\[1, 4\].*4 decoder layers"):
        _build(new_backbone, mm_layers=[1, 4])


def test_a_backbone_is_wrapped_once(new_backbone):
    bb = new_backbone()
    build_model(small_config(), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=bb)
    with pytest.raises(BackboneError, match="already wrapped"):
        build_model(small_config(), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=bb)


def test_av_memory_is_cleared_and_required(new_backbone):
    model = _build(new_backbone).eval()
    b = make_batch()
    model(b)
    assert model.lm.memory._held is None
    with pytest.raises(RuntimeError, match="without AV memory"):
        model.lm.backbone_model(input_ids=b.input_ids)
    with pytest.raises(ZeroDivisionError):
        with model.lm.memory.hold(torch.zeros(1), torch.zeros(1), n_text=1):
            1 / 0
    assert model.lm.memory._held is None


@pytest.mark.parametrize("ffw", ["full", "lora"])
def test_trainable_state_dict_round_trip(new_backbone, ffw):
    cfg = {"ffw": ffw, "lora": {"r": 4, "alpha": 8.0}, "av_encoder": {"batchnorm": True}}
    model = _build(new_backbone, **cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(make_batch()).loss.backward()
    opt.step()  # also moves BatchNorm statistics
    state = copy.deepcopy(model.trainable_state_dict())
    assert not any(".layer." in k or "embed" in k or "wte" in k or "lm_head" in k for k in state)
    backbone_ids = {id(t) for t in model.lm.frozen_tensors()}
    n_backbone_keys = sum(1 for v in model.state_dict(keep_vars=True).values() if id(v) in backbone_ids)
    assert len(state) == len(model.state_dict()) - n_backbone_keys

    torch.manual_seed(99)
    fresh = build_model(small_config(**cfg), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone())
    b = make_batch(seed=3)
    model.eval(), fresh.eval()
    assert not torch.allclose(fresh(b).y_o, model(b).y_o)
    fresh.load_trainable_state_dict(state)
    for k in ("y_o", "y_t", "y_av", "y_f", "lm_logits"):
        torch.testing.assert_close(getattr(fresh(b), k), getattr(model(b), k), atol=0, rtol=0)

    key = next(k for k in state if "mm_block.attn.q_proj" in k)
    missing = {k: v for k, v in state.items() if k != key}
    with pytest.raises(CheckpointError, match=f"missing keys {key}"):
        fresh.load_trainable_state_dict(missing)
    with pytest.raises(CheckpointError, match="unexpected keys extra.weight"):
        fresh.load_trainable_state_dict({**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=f"{key}.*shape"):
        fresh.load_trainable_state_dict({**state, key: torch.zeros(2, 2)})


def test_gate_values(new_backbone):
    model = _build(new_backbone, gate="sigmoid", gate_init=0.0)
    assert model.gate_values() == [
        {"layer": 1, "gate_attn": 0.5, "gate_ffw": 0.5},
        {"layer": 3, "gate_attn": 0.5, "gate_ffw": 0.5},
    ]
    off = _build(new_backbone, ffw="off", gate="none")
    assert off.gate_values()[0] == {"layer": 1, "gate_attn": 1.0, "gate_ffw": None}


def test_parameter_counts(new_backbone):
    bb = new_backbone()
    n_backbone = bb.n_parameters
    mlp = sum(p.numel() for p in bb.mlp(1).parameters())
    torch.manual_seed(0)
    model = build_model(small_config(), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=bb)
    counts = model.parameter_counts()
    D, d_av, K, H = 32, 8, 3, 8
    norm = 2 * D if bb.model_type == "gpt2" else D  # LayerNorm weight+bias vs RMSNorm weight
    per_block = 2 * D * D + 2 * d_av * D + 2 * norm + 2 + mlp  # q,o + k,v + norms + gates + FFW
    heads = ((2 * D + d_av) * H + H + 2 * H + H + 1) + (D + 1) + (D + 1) + (d_av + 1)
    by = counts["by_module"]
    assert by["backbone"] == {"trainable": 0, "total": n_backbone}
    assert by["mm_blocks"]["trainable"] == 2 * per_block
    assert by["fusion_tokens"]["trainable"] == K * D
    assert by["heads"]["trainable"] == heads
    assert by["av_norm"]["trainable"] == 2 * d_av
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == sum(v["total"] for v in by.values())
    assert counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counts["trainable"] == counts["total"] - n_backbone


def test_bf16_backbone_keeps_trainable_parts_float32(new_backbone):
    bb = new_backbone()
    bb.model.to(torch.bfloat16)
    torch.manual_seed(0)
    model = build_model(small_config(), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=bb)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    out = model(make_batch())
    assert out.y_o.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.lm.fusion_tokens.grad is not None and torch.isfinite(model.lm.fusion_tokens.grad).all()


@pytest.mark.parametrize("model_kw", [{}, {"mm_layers": [0, 3]}, {"gca_query": "text+fusion", "mm_layers": [2]}])
def test_prefix_split_equals_one_pass_in_outputs_and_gradients(new_backbone, model_kw):
    # Training runs the layers before the first MM block as text (no_grad, KV cache) then fusion
    # tokens; that must be the very computation of one pass over T+K tokens.
    results = []
    for split in (True, False):
        model = _build(new_backbone, **model_kw).train()
        model.lm.split_prefix = split
        torch.manual_seed(1)  # same dropout masks in the MM blocks
        out = model(make_batch(B=4, T=7))
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((out, grads))
    (a, ga), (b, gb) = results
    for name in ("y_o", "y_t", "y_av", "y_f", "lm_logits"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-4)
    assert ga.keys() == gb.keys() and "lm.fusion_tokens" in ga
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-5, rtol=1e-4, msg=name)


def test_prefix_layers_are_skipped_when_replaying(new_backbone):
    # The frozen prefix runs once per batch for text and once for the fusion tokens, never a third time.
    model = _build(new_backbone, mm_layers=[2, 3]).train()
    calls = []
    first_layer = model.lm.backbone.layers[0].layer
    first_layer.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[1]))
    model(make_batch(B=4, T=7))
    assert calls == [7, 3]  # T text tokens, then K = 3 fusion tokens
    calls.clear()
    with torch.no_grad():
        model.eval()(make_batch(B=4, T=7))
    assert calls == [10]  # evaluation: one pass over T+K


def test_fusion_head_reads_only_the_fusion_tokens(new_backbone):
    """y_f = W_f on each fusion token's final state (eq. 13): no gradient, hence no dependence,
    reaches it from the text tokens' states; y_o reads both."""
    from deepmlf.model.multimodal_lm import MultimodalLMOutput

    model = _build(new_backbone).eval()
    b = make_batch()
    with torch.no_grad():
        real = model.lm(b.input_ids, b.attention_mask, *_z(model, b))
    text = real.text_hidden.clone().requires_grad_(True)
    fusion = real.fusion_hidden.clone().requires_grad_(True)
    model.lm.forward = lambda *a, **k: MultimodalLMOutput(text_hidden=text, fusion_hidden=fusion)
    out = model(b)
    g_text, g_fusion = torch.autograd.grad(out.y_f.sum(), [text, fusion], allow_unused=True, retain_graph=True)
    assert g_text is None or torch.count_nonzero(g_text) == 0
    assert torch.count_nonzero(g_fusion) > 0
    # Each fusion token's y_f reads that token alone.
    g_one = torch.autograd.grad(out.y_f[:, 0].sum(), fusion, retain_graph=True)[0]
    assert torch.count_nonzero(g_one[:, 1:]) == 0 and torch.count_nonzero(g_one[:, 0]) > 0
    g_text_o = torch.autograd.grad(out.y_o.sum(), text)[0]
    assert torch.count_nonzero(g_text_o) > 0


def test_ffw_on_fusion_tokens_keeps_text_states_the_frozen_lms(new_backbone):
    """model.ffw_tokens=fusion: with every gate open (sigmoid 0.5), the text states and LM logits
    still equal the frozen LM's, and the fusion tokens still read the AV memory."""
    reference = new_backbone()
    model = _build(new_backbone, ffw_tokens="fusion").eval()
    b = make_batch()
    with torch.no_grad():
        expected = reference.model.base_model(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
        got = model.lm(b.input_ids, b.attention_mask, *_z(model, b))
        z, mask = _z(model, b)
        other = model.lm(b.input_ids, b.attention_mask, torch.randn_like(z), mask)
    real = b.attention_mask.bool()
    torch.testing.assert_close(got.text_hidden[real], expected[real], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got.fusion_hidden, other.fusion_hidden)


def test_fusion_init_std_embedding_matches_the_embedding_rms(new_backbone):
    default = _build(new_backbone)
    matched = _build(new_backbone, fusion_init_std="embedding")
    emb_rms = float(matched.lm.backbone.embed_tokens.weight.pow(2).mean().sqrt())
    got = float(matched.lm.fusion_tokens.detach().pow(2).mean().sqrt())
    assert abs(got - emb_rms) < 0.35 * emb_rms  # n_f · D = 96 draws
    assert abs(float(default.lm.fusion_tokens.detach().pow(2).mean().sqrt()) - 0.02) < 0.35 * 0.02


def test_new_switches_at_their_defaults_are_bit_identical(new_backbone):
    """gca_scale 1, ffw_tokens all, fusion_init_std 0.02 written out = the config without them."""
    a = _build(new_backbone)
    b = _build(new_backbone, gca_scale=1.0, ffw_tokens="all", fusion_init_std=0.02)
    batch = make_batch()
    a.train(), b.train()
    torch.manual_seed(1)
    oa = a(batch)
    torch.manual_seed(1)
    ob = b(batch)
    assert torch.equal(oa.y_o, ob.y_o) and torch.equal(oa.y_f, ob.y_f) and torch.equal(oa.loss, ob.loss)
    oa.loss.backward(), ob.loss.backward()
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), n


@pytest.mark.parametrize("ffw", ["full", "off"])
def test_text_cache_equals_the_uncached_model_in_outputs_and_gradients(new_backbone, ffw):
    """model.text_cache: the same outputs and gradients as without it (first pass fills it, second reads it)."""
    kw = dict(ffw=ffw, ffw_tokens="fusion", mm_layers=[1, 3])
    ref = _build(new_backbone, **kw)
    cached = _build(new_backbone, **kw, text_cache=True)
    assert cached.lm.text_cache is not None and ref.lm.text_cache is None
    cached.load_trainable_state_dict(ref.trainable_state_dict())
    b = make_batch()
    for model in (ref, cached):
        model.eval()  # no dropout: the two must agree exactly
    for rnd in range(2):
        outs = []
        for model in (ref, cached):
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                out = model(b)
                out.loss.backward()
            outs.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        (o1, g1), (o2, g2) = outs
        for name in ("y_o", "y_t", "y_av", "y_f", "lm_logits", "loss"):
            torch.testing.assert_close(getattr(o2, name), getattr(o1, name), atol=1e-5, rtol=1e-5)
        assert set(g1) == set(g2)
        for n in g1:
            torch.testing.assert_close(g2[n], g1[n], atol=1e-5, rtol=1e-4)
    assert len(cached.lm.text_cache) == 4 and cached.lm.text_cache.hits == 4 and cached.lm.text_cache.misses == 4


@pytest.mark.parametrize("mm_layers", [[1, 3], [0, 2]])
def test_fixed_fusion_tokens_with_the_text_cache_equal_the_uncached_model(new_backbone, mm_layers):
    """model.fusion_trainable=false + text_cache: the fusion tokens' prefix states are cached
    too (the pass replays from the first MM block), with the same outputs and gradients as the
    uncached model; new fusion-token values (a loaded checkpoint) invalidate those states."""
    kw = dict(ffw_tokens="fusion", mm_layers=mm_layers, fusion_trainable=False)
    ref = _build(new_backbone, **kw)
    cached = _build(new_backbone, **kw, text_cache=True)
    assert not ref.lm.fusion_tokens.requires_grad and not cached.lm.fusion_tokens.requires_grad
    b = make_batch()

    def run(model):
        model.eval()
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            out = model(b)
            out.loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    for state in (ref.trainable_state_dict(), None):
        if state is None:  # other fusion-token values: the cached prefix states must not be reused
            state = dict(ref.trainable_state_dict())
            state["lm.fusion_tokens"] = state["lm.fusion_tokens"] * 2.0
            ref.load_trainable_state_dict(state)
        cached.load_trainable_state_dict(state)
        for _ in range(2):  # the first pass fills the cache, the second reads it
            (o1, g1), (o2, g2) = run(ref), run(cached)
            for name in ("y_o", "y_f", "loss"):
                torch.testing.assert_close(getattr(o2, name), getattr(o1, name), atol=1e-5, rtol=1e-5)
            assert set(g1) == set(g2) and "lm.fusion_tokens" not in g1
            for n in g1:
                torch.testing.assert_close(g2[n], g1[n], atol=1e-5, rtol=1e-4)
    assert len(cached.lm.text_cache.fusion_states) == 8  # 4 transcripts x 2 fusion-token values


def test_text_cache_past_its_budget_recomputes_and_stays_exact(new_backbone):
    """model.text_cache_mb: a full cache stores nothing more; the rows it cannot hold are computed
    afresh on every pass, with the same outputs as the uncached model."""
    kw = dict(ffw_tokens="fusion", mm_layers=[1, 3], fusion_trainable=False)
    ref = _build(new_backbone, **kw).eval()
    cached = _build(new_backbone, **kw, text_cache=True, text_cache_mb=1).eval()
    assert cached.lm.text_cache.max_bytes == 2**20 == cached.lm.text_cache.fusion_states.max_bytes
    cached.lm.text_cache.max_bytes = cached.lm.text_cache.fusion_states.max_bytes = 0  # full from the start
    cached.load_trainable_state_dict(ref.trainable_state_dict())
    b = make_batch()
    with torch.no_grad():
        for _ in range(2):
            o1, o2 = ref(b), cached(b)
            for name in ("y_o", "y_f", "y_t"):
                torch.testing.assert_close(getattr(o2, name), getattr(o1, name), atol=1e-5, rtol=1e-5)
    cache = cached.lm.text_cache
    assert len(cache) == 0 and len(cache.fusion_states) == 0 and cache.nbytes == 0
    assert cache.misses == 8 and cache.hits == 0  # 4 transcripts, each recomputed on both passes


def test_fixed_fusion_tokens_are_not_trained(new_backbone):
    from deepmlf.train.optim import param_groups

    model = _build(new_backbone, fusion_trainable=False)
    before = model.lm.fusion_tokens.detach().clone()
    groups = param_groups(model, small_config().train, av_module=model.av_encoder)
    assert all(p is not model.lm.fusion_tokens for g in groups for p in g["params"])
    assert torch.equal(model.lm.fusion_tokens.detach(), before)
    assert "lm.fusion_tokens" in model.trainable_state_dict()  # still saved with the checkpoint


def test_text_cache_is_refused_where_text_states_are_trained(new_backbone):
    with pytest.raises(ConfigError, match="model.text_cache=true .*model.ffw_tokens=all"):
        _build(new_backbone, text_cache=True)
    with pytest.raises(ConfigError, match="model.gca_query=text"):
        _build(new_backbone, text_cache=True, ffw_tokens="fusion", gca_query="text")
    with pytest.raises(ConfigError, match="model.augment.kind=seqaug"):
        _build(new_backbone, text_cache=True, ffw_tokens="fusion", augment={"kind": "seqaug", "p_apply": 0.5})
