"""DeepMLF's double flow (model.double_flow): off = today's model bit for bit; the missing flow
ignores the transcript; stop-gradient terms; MIA identity at init; text-missing inference."""

from __future__ import annotations

import math

import pytest
import torch

from deepmlf.model import build_model
from deepmlf.model.double_flow import MIA

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config

QUIET = {"dropout": 0.0, "av_encoder": {"dropout": 0.0}}


def _run(model, batch):
    torch.manual_seed(1)  # the copied FFW keeps the LM's dropout: the same draws for both models
    return model(batch)


def _model(new_backbone, seed=0, **double_flow):
    torch.manual_seed(seed)
    extra = {"double_flow": {"enabled": True, **double_flow}} if double_flow.pop("on", True) else {}
    return build_model(small_config(**QUIET, **extra), audio_dim=AUDIO_DIM, vision_dim=VISION_DIM,
                       backbone=new_backbone())


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_off_is_todays_model_bit_for_bit(new_backbone):
    batch = make_batch()
    plain = _model(new_backbone, on=False)
    off = _model(new_backbone, on=False, enabled=False)
    assert off.double_flow is None
    assert plain.trainable_state_dict().keys() == off.trainable_state_dict().keys()
    a, b = _run(plain, batch), _run(off, batch)
    assert torch.equal(a.y_o, b.y_o) and torch.equal(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    ga, gb = _grads(plain), _grads(off)
    assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga)


def test_zero_weights_reduce_to_the_full_flow_loss(new_backbone):
    batch = make_batch()
    plain = _model(new_backbone, on=False)
    zero = _model(new_backbone, w_full=1.0, w_missing=0.0, lambda_mkd=0.0, lambda_query=0.0, lambda_rs=0.0)
    a, b = _run(plain, batch), _run(zero, batch)
    assert torch.equal(a.y_o, b.y_o)  # the extra parts are built last: same initial weights elsewhere
    assert torch.equal(a.loss, b.loss)
    assert {"missing", "mkd", "query", "rs"} <= set(b.loss_terms)
    a.loss.backward()
    b.loss.backward()
    ga, gb = _grads(plain), _grads(zero)
    assert all(torch.equal(ga[k], gb[k]) for k in ga)
    half = _model(new_backbone, w_full=0.5, w_missing=0.0, lambda_mkd=0.0, lambda_query=0.0, lambda_rs=0.0)
    assert _run(half, batch).loss.item() == pytest.approx(0.5 * a.loss.item(), rel=1e-6)


def test_the_missing_flow_ignores_the_transcript(new_backbone):
    model = _model(new_backbone).train()
    batch = make_batch()
    other = make_batch(seed=5)
    other.audio, other.vision = batch.audio, batch.vision
    other.audio_lengths, other.vision_lengths, other.labels = batch.audio_lengths, batch.vision_lengths, batch.labels
    assert not torch.equal(other.input_ids, batch.input_ids)
    model.eval()
    batch.text_missing = torch.ones(4, dtype=torch.bool)
    other.text_missing = torch.ones(4, dtype=torch.bool)
    with torch.no_grad():
        a, b = model(batch), model(other)
    assert torch.equal(a.y_m, b.y_m)
    assert torch.equal(a.y_o, a.y_m)  # no transcript: the imagined flow predicts
    assert not torch.equal(a.y_t, b.y_t)  # while the text head did read the (different) tokens


def test_inference_uses_the_imagined_flow_only_without_text(new_backbone):
    model = _model(new_backbone).eval()
    batch = make_batch()
    with torch.no_grad():
        complete = model(batch)
        assert complete.y_m is None  # complete data: one flow, as plain DeepMLF
        batch.text_missing = torch.tensor([True, False, True, False])
        mixed = model(batch)
    assert torch.equal(mixed.y_o[[1, 3]], complete.y_o[[1, 3]])
    assert torch.equal(mixed.y_o[[0, 2]], mixed.y_m[[0, 2]])


def test_stop_gradient_terms_leave_the_full_flow_alone(new_backbone):
    model = _model(new_backbone, lambda_rnc=0.5).train()
    out = model(make_batch())
    s = out.states
    for term in ("mkd", "query"):
        grads = torch.autograd.grad(out.loss_terms[term], (s["x_tk_full"], s["x_f_full"]), retain_graph=True,
                                    allow_unused=True)
        assert all(g is None or not g.any() for g in grads), term
        (g_m,) = torch.autograd.grad(out.loss_terms[term], s["x_tk_missing"] if term == "mkd" else s["x_f_missing"],
                                     retain_graph=True)
        assert g_m.abs().sum() > 0
    (g_rs,) = torch.autograd.grad(out.loss_terms["rs"], s["h_full"], retain_graph=True)
    assert g_rs.abs().sum() > 0  # L_RS is not detached
    assert math.isfinite(out.loss_terms["rnc"].item()) and out.loss_terms["rnc"].item() >= 0
    out.loss.backward()
    assert model.double_flow.imagine.proj.weight.grad.abs().sum() > 0  # the imagined tokens learn


def test_mia_is_the_identity_at_init():
    torch.manual_seed(0)
    mia = MIA(d_model=16, d_av=6, hidden=8, dropout=0.3).train()
    x, z = torch.randn(5, 16), torch.randn(5, 6)
    assert torch.equal(mia(x, z), x)


def test_double_flow_checkpoint_round_trip_and_counts(new_backbone):
    model = _model(new_backbone, mia=True, lambda_rnc=0.5)
    sd = model.trainable_state_dict()
    assert any(k.startswith("double_flow.imagine") for k in sd) and any(k.startswith("double_flow.mia") for k in sd)
    fresh = _model(new_backbone, seed=3, mia=True, lambda_rnc=0.5)
    fresh.load_trainable_state_dict(sd)
    assert "double_flow" in model.parameter_counts()["by_module"]


def test_double_flow_with_the_text_state_cache(new_backbone):
    torch.manual_seed(0)
    cfg = small_config(**QUIET, ffw_tokens="fusion", text_cache=True, double_flow={"enabled": True})
    model = build_model(cfg, audio_dim=AUDIO_DIM, vision_dim=VISION_DIM, backbone=new_backbone()).train()
    out = _run(model, make_batch())
    out.loss.backward()  # the full flow reads cached text states, the missing flow runs its tokens
    assert model.double_flow.imagine.proj.weight.grad.abs().sum() > 0
    assert math.isfinite(out.loss.item())


def test_head_batchnorm_statistics_come_from_the_full_flow_only(new_backbone):
    batch = make_batch()
    plain = _model(new_backbone, on=False).train()
    full = _model(new_backbone).train()  # head_bn "full", the default
    per_flow = _model(new_backbone, head_bn="per_flow").train()
    for m in (plain, full, per_flow):
        _run(m, batch)
    bn_plain, bn_full, bn_per = (m.heads.task.net[1] for m in (plain, full, per_flow))
    assert torch.equal(bn_full.running_mean, bn_plain.running_mean)  # the missing flow left them alone
    assert torch.equal(bn_full.running_var, bn_plain.running_var)
    assert int(bn_full.num_batches_tracked) == 1 and int(bn_per.num_batches_tracked) == 2
    assert not torch.equal(bn_per.running_mean, bn_plain.running_mean)


def test_missing_flow_is_normalised_by_the_full_batch_statistics(new_backbone):
    model = _model(new_backbone).train()
    seen = []  # the head's pre-BatchNorm activations: the full flow's call, then the missing flow's
    hook = model.heads.task.net[0].register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    out = _run(model, make_batch())
    hook.remove()
    a_f, a_m = seen
    bn = model.heads.task.net[1]
    mean, var = a_f.mean(0), a_f.var(0, unbiased=False)  # BatchNorm's own (biased) batch variance
    expected = torch.relu((a_m - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias)
    torch.testing.assert_close(out.states["h_missing"], expected, rtol=1e-5, atol=1e-6)
    (g,) = torch.autograd.grad(out.loss_terms["missing"], out.states["h_full"], retain_graph=True,
                               allow_unused=True)
    assert g is None or not g.any()  # the statistics are detached: the missing loss does not reach h^F


def test_rs_detach_stops_the_gradient_to_the_full_flow(new_backbone):
    model = _model(new_backbone, rs_detach=True).train()
    out = _run(model, make_batch())
    s = out.states
    (g,) = torch.autograd.grad(out.loss_terms["rs"], s["h_full"], retain_graph=True, allow_unused=True)
    assert g is None or not g.any()
    (g_m,) = torch.autograd.grad(out.loss_terms["rs"], s["h_missing"], retain_graph=True)
    assert g_m.abs().sum() > 0


def test_lr_parts_name_the_double_flow(new_backbone):
    model = _model(new_backbone, mia=True)
    parts = model.lr_parts()
    assert {id(p) for p in parts["double_flow"]} == {id(p) for p in model.double_flow.parameters()}
    assert _model(new_backbone, on=False).lr_parts()["double_flow"] == []


def test_imagined_tokens_are_distinct_and_at_the_embedding_scale_at_init():
    from deepmlf.model.double_flow import ImaginedTokens

    torch.manual_seed(0)
    imagine = ImaginedTokens(d_av=16, d_model=32, n_tokens=4, n_heads=2, embed_rms=0.136)
    z = torch.nn.functional.layer_norm(torch.randn(3, 10, 16), (16,))  # the normed AV memory
    tokens = imagine(z, torch.ones(3, 10, dtype=torch.bool))  # (3, 4, 32)
    torch.testing.assert_close(tokens.pow(2).mean(-1).sqrt(), torch.full((3, 4), 0.136), rtol=1e-4, atol=1e-5)

    def mean_cos(t):  # mean cosine between different imagined tokens of a sample
        unit = torch.nn.functional.normalize(t, dim=-1)
        return (unit @ unit.transpose(1, 2))[:, ~torch.eye(4, dtype=torch.bool)].mean().item()

    assert mean_cos(tokens) < 0.99  # N(0, 1) queries attend differently
    with torch.no_grad():
        imagine.queries.mul_(0.02)  # the first version's N(0, 0.02²): uniform attention
    assert mean_cos(imagine(z, torch.ones(3, 10, dtype=torch.bool))) > 0.9999  # one token repeated n_i times
