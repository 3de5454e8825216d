"""MAGT (MAGTKD stage 2), the Concat baseline and the stage-1 heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepmlf.config_erc import ERCConfig
from deepmlf.data.erc.batch import DialogueBatch
from deepmlf.model.magt import Gate
from deepmlf.model.registry import build_arch, get_arch

DIMS = {"text": 12, "audio": 5, "audio_kd": 6, "video": 4, "video_kd": 7}
C = 4


def cfg(**model) -> ERCConfig:
    c = ERCConfig()
    c.data.classes = [f"c{i}" for i in range(C)]
    c.model = c.model.model_copy(update={"d_model": 16, "n_heads": 2, "dropout": 0.0, "n_speakers": 3, **model})
    return c


def batch(B=2, K=5, lengths=(5, 3), seed=0, labels=True) -> DialogueBatch:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, K, dtype=torch.bool)
    for b, k in enumerate(lengths):
        mask[b, :k] = True
    feats = {m: torch.randn(B, K, d, generator=g) * mask[..., None] for m, d in DIMS.items()}
    spk = torch.randint(0, 3, (B, K), generator=g).masked_fill(~mask, 3)
    pos = torch.arange(K).expand(B, K).clone()
    lab = torch.randint(0, C, (B, K), generator=g).masked_fill(~mask, -100) if labels else None
    return DialogueBatch(features=feats, mask=mask, speakers=spk, positions=pos, padded_labels=lab,
                         ids=[str(i) for i in range(int(mask.sum()))])


def model(c):
    torch.manual_seed(0)
    return build_arch(c.model.arch, c, dims=DIMS, task="erc").eval()


def pad_more(b: DialogueBatch, extra: int) -> DialogueBatch:
    B, K = b.mask.shape
    grow = lambda t, v: torch.cat([t, torch.full((B, extra, *t.shape[2:]), v, dtype=t.dtype)], 1)  # noqa: E731
    return DialogueBatch(features={k: torch.cat([v, torch.randn(B, extra, v.shape[2]) * 5], 1) for k, v in b.features.items()},
                         mask=grow(b.mask, False), speakers=grow(b.speakers, 3),
                         positions=torch.arange(K + extra).expand(B, K + extra).clone(),
                         padded_labels=grow(b.padded_labels, -100), ids=b.ids)


@pytest.mark.parametrize("arch", ["magt", "concat"])
def test_shapes_and_padding_invariance(arch):
    c = cfg(arch=arch)
    m = model(c)
    b = batch()
    out = m(b)
    assert out.prediction.shape == (8, C) and out.loss.ndim == 0
    out2 = m(pad_more(b, 4))  # garbage in padded slots: outputs at real utterances unchanged
    assert torch.allclose(out.prediction, out2.prediction, atol=1e-6)


def test_permutation_equivariance_without_speaker_and_position():
    c = cfg(speaker_embedding=False, position_embedding=False)
    m = model(c)
    b = batch(B=1, K=6, lengths=(6,))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    pb = DialogueBatch(features={k: v[:, perm] for k, v in b.features.items()}, mask=b.mask, speakers=b.speakers[:, perm],
                       positions=b.positions, padded_labels=b.padded_labels[:, perm], ids=b.ids)
    assert torch.allclose(m(b).prediction[perm], m(pb).prediction, atol=1e-5)
    # with the speaker embedding, it depends on who says what
    c2 = cfg(position_embedding=False)
    m2 = model(c2)
    b.speakers[0] = torch.tensor([0, 1, 0, 1, 0, 1])
    pb.speakers[0] = torch.tensor([0, 0, 0, 0, 0, 0])
    assert not torch.allclose(m2(b).prediction[perm], m2(pb).prediction, atol=1e-3)


def test_alpha_beta_zero_is_exactly_ce():
    c = cfg()
    c.loss.alpha = c.loss.beta = 0.0
    c.loss.kd_terms = ["ce", "logit", "feat"]
    m = model(c)
    b = batch()
    out = m(b)
    assert torch.equal(out.loss, F.cross_entropy(out.prediction, b.labels))
    assert {"kd_a_logit", "kd_v_feat", "kd_a_ce"} <= set(out.loss_terms)


def test_detach_teacher_keeps_kd_gradients_off_the_text_branch():
    for detach, expect_zero in ((True, True), (False, False)):
        c = cfg()
        c.loss.alpha, c.loss.beta, c.loss.detach_teacher = 1.0, 1.0, detach
        c.loss.kd_terms = ["logit"]
        m = model(c)
        out = m(batch())
        kd = out.loss - out.loss_terms["ce"]
        grad = torch.autograd.grad(kd, m.heads["t"].weight, allow_unused=True)[0]
        assert (grad is None or float(grad.abs().sum()) == 0.0) == expect_zero


def test_gate_kinds_and_shared_text_anchor():
    x = torch.randn(50, 16)
    g = Gate(16, "sigmoid_relu")
    ratio = g(x) / x
    assert bool((ratio >= 0.5 - 1e-6).all()) and bool((ratio <= 1.0 + 1e-6).all())
    assert torch.equal(Gate(16, "none")(x), x)
    full, shared = model(cfg()), model(cfg(share_text_anchor=True))
    assert set(full.blocks) - set(shared.blocks) == {"at", "vt"}  # the authors' one E_tt for all text branches
    assert full.parameter_counts()["trainable"] > shared.parameter_counts()["trainable"]


def test_text_only_magt_and_inputs():
    c = cfg(modalities=["text"])
    m = model(c)
    assert list(m.blocks) == ["tt"]
    out = m(batch())
    assert set(out.loss_terms) == {"ce"}
    raw = model(cfg(audio_input="raw"))
    assert raw.inp["a"].in_features == DIMS["audio"]
    assert model(cfg()).inp["a"].in_features == DIMS["audio_kd"]
    with pytest.raises(ValueError, match="must include 'text'"):
        cfg(modalities=["audio"])


def test_registry_and_unlabelled():
    assert get_arch("magt", task="erc").display_name == "MAGT"
    out = model(cfg())(batch(labels=False))
    assert out.loss is None and out.prediction.shape == (8, C)


def test_stage1_student_kd_terms_and_frozen_teacher():
    c = cfg()
    c.stage1.d_feature = 8
    arch = get_arch("erc-utterance-head", task="erc")
    teacher = arch.build(c, dims=DIMS, modality="text")
    student = arch.build(c, dims=DIMS, modality="audio", teacher=teacher, kd=True)
    out = student.train()(batch())
    assert set(out.loss_terms) == {"ce", "logit", "feat"} and not teacher.training
    assert all(not k.startswith("teacher.") for k in student.trainable_state_dict())
    out.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
