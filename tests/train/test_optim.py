"""Optimiser groups and the warm-up + cosine schedule (DESIGN.md §2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deepmlf.config import TrainConfig
from deepmlf.errors import ConfigError
from deepmlf.train.optim import (build_optimizer, build_scheduler, grad_clip_parameters, load_optimizer_state,
                                 param_groups, steps_per_epoch)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.av_encoder = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.BatchNorm1d(6))
        self.proj = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.gate = nn.Parameter(torch.zeros(()))  # a scalar gate: no decay
        self.tokens = nn.Parameter(torch.zeros(3, 8))  # fusion tokens: a matrix, decayed
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_groups_split_av_and_decay_by_kind_and_drop_frozen():
    m = Toy()
    cfg = TrainConfig(lr=1e-4, lr_av=3e-4, weight_decay=0.1, weight_decay_av=0.2)
    groups = {g["name"]: g for g in param_groups(m, cfg, av_module=m.av_encoder)}
    assert set(groups) == {"main", "main_no_decay", "av", "av_no_decay"}

    assert _ids(groups["main"]["params"]) == _ids([m.proj.weight, m.tokens])
    assert _ids(groups["main_no_decay"]["params"]) == _ids([m.proj.bias, m.norm.weight, m.norm.bias, m.gate])
    assert _ids(groups["av"]["params"]) == _ids([m.av_encoder[0].weight])
    av_no = [m.av_encoder[0].bias, *m.av_encoder[1].parameters(), *m.av_encoder[2].parameters()]
    assert _ids(groups["av_no_decay"]["params"]) == _ids(av_no)

    assert (groups["main"]["lr"], groups["main"]["weight_decay"]) == (1e-4, 0.1)
    assert (groups["main_no_decay"]["lr"], groups["main_no_decay"]["weight_decay"]) == (1e-4, 0.0)
    assert (groups["av"]["lr"], groups["av"]["weight_decay"]) == (3e-4, 0.2)
    assert groups["av_no_decay"]["weight_decay"] == 0.0
    every = set().union(*(_ids(g["params"]) for g in groups.values()))
    assert not every & _ids(m.frozen.parameters())
    assert every == _ids(p for p in m.parameters() if p.requires_grad)


def test_optimizer_betas_and_frozen_av_encoder_leaves_no_av_group():
    m = Toy()
    m.av_encoder.requires_grad_(False)  # pretrain_freeze
    opt = build_optimizer(m, TrainConfig(betas=(0.8, 0.9)), av_module=m.av_encoder)
    assert [g["name"] for g in opt.param_groups] == ["main", "main_no_decay"]
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)
    # Clipping covers the non-AV groups only.
    m2 = Toy()
    opt2 = build_optimizer(m2, TrainConfig(), av_module=m2.av_encoder)
    clipped = _ids(grad_clip_parameters(opt2, exclude_groups=("av", "av_no_decay")))
    assert not clipped & _ids(m2.av_encoder.parameters())
    assert id(m2.proj.weight) in clipped


def test_nothing_trainable_is_a_config_error():
    m = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="frozen"):
        param_groups(m, TrainConfig())


def test_steps_per_epoch_counts_partial_accumulation_group():
    assert steps_per_epoch(10, 4) == 3
    assert steps_per_epoch(8, 4) == 2
    assert steps_per_epoch(10, 4, limit_batches=5) == 2
    assert steps_per_epoch(1, 8) == 1


def test_warmup_then_cosine_to_min_lr_at_known_steps():
    m = Toy()
    cfg = TrainConfig(lr=1e-3, lr_av=2e-3, min_lr=1e-5, warmup_epochs=1, max_epochs=5)
    opt = build_optimizer(m, cfg, av_module=m.av_encoder)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4)  # warm-up 4 steps, 20 in all
    lrs = []
    for _ in range(21):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    main = [lr[0] for lr in lrs]
    av = [lr[2] for lr in lrs]
    # Linear warm-up from 0 over one epoch (4 steps).
    assert main[:5] == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert av[2] == pytest.approx(1e-3)  # the AV group warms up to its own lr
    # Cosine from lr to min_lr over the remaining 16 steps: halfway (step 12) is the midpoint.
    rate = 1e-5 / 1e-3
    assert main[12] == pytest.approx(1e-3 * (0.5 * (1 + math.cos(math.pi * 0.5)) * (1 - rate) + rate))
    assert main[12] == pytest.approx((1e-3 + 1e-5) / 2)
    assert main[20] == pytest.approx(1e-5)
    assert av[20] == pytest.approx(2e-5)  # min_lr is a ratio of each group's lr
    assert all(a >= b for a, b in zip(main[4:], main[5:]))  # monotone after warm-up


def test_max_steps_shortens_the_cosine_and_bad_min_lr_is_rejected():
    m = Toy()
    cfg = TrainConfig(lr=1e-3, min_lr=0.0, warmup_epochs=0, max_epochs=10, max_steps=4)
    opt = build_optimizer(m, cfg, av_module=m.av_encoder)
    sched = build_scheduler(opt, cfg, steps_per_epoch=10)
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="train.min_lr"):
        build_scheduler(opt, TrainConfig(lr=1e-4, min_lr=1e-3), steps_per_epoch=3)


def test_authors_warm_restart_cosine_at_known_steps():
    """lr_schedule=cosine_restarts: warm-up, then CosineAnnealingWarmRestarts(T_0=(max_epochs+1)·spe - warm-up,
    eta_min=min_lr) — the same lrs as torch's own scheduler after the warm-up, restarting at lr."""
    m = Toy()
    cfg = TrainConfig(lr=1e-3, lr_av=2e-3, min_lr=1e-7, warmup_epochs=1, max_epochs=2, lr_schedule="cosine_restarts")
    opt = build_optimizer(m, cfg, av_module=m.av_encoder)
    sched = build_scheduler(opt, cfg, steps_per_epoch=4)  # warm-up 4 steps, period (2+1)*4-4 = 8
    lrs = []
    for _ in range(4 + 8 * 3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3])
    ref_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(ref_opt, T_0=8, eta_min=1e-7)
    expected = []
    for _ in range(8 * 3):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert lrs[4:] == pytest.approx(expected, rel=1e-6)
    assert lrs[4] == lrs[12] == lrs[20] == pytest.approx(1e-3)  # each period restarts at lr
    assert min(lrs[4:]) > 1e-7  # never reaches 0, whatever the epoch count


class ToyParts(Toy):
    def lr_parts(self) -> dict[str, list[nn.Parameter]]:
        return {"gates": [self.gate], "tokens": [self.tokens], "norms": list(self.norm.parameters())}


def test_lr_parts_give_named_parts_their_own_lr_and_keep_the_rest():
    m = ToyParts()
    cfg = TrainConfig(lr=1e-4, lr_av=3e-4, weight_decay=0.1, lr_parts={"gates": 30.0, "tokens": 3.0})
    groups = {g["name"]: g for g in param_groups(m, cfg, av_module=m.av_encoder)}
    assert list(groups) == ["main", "main_no_decay", "gates_no_decay", "tokens", "av", "av_no_decay"]
    assert _ids(groups["gates_no_decay"]["params"]) == _ids([m.gate])
    assert groups["gates_no_decay"]["lr"] == pytest.approx(3e-3) and groups["gates_no_decay"]["weight_decay"] == 0.0
    assert _ids(groups["tokens"]["params"]) == _ids([m.tokens])
    assert (groups["tokens"]["lr"], groups["tokens"]["weight_decay"]) == (pytest.approx(3e-4), 0.1)
    assert _ids(groups["main"]["params"]) == _ids([m.proj.weight])
    assert _ids(groups["main_no_decay"]["params"]) == _ids([m.proj.bias, m.norm.weight, m.norm.bias])
    every = [id(p) for g in groups.values() for p in g["params"]]
    assert len(every) == len(set(every)) == len([p for p in m.parameters() if p.requires_grad])
    # Empty lr_parts: exactly today's groups.
    plain = param_groups(m, TrainConfig(lr=1e-4), av_module=m.av_encoder)
    assert [g["name"] for g in plain] == ["main", "main_no_decay", "av", "av_no_decay"]


def test_lr_parts_errors_name_the_part_or_the_model():
    with pytest.raises(ConfigError, match=r"unknown part\(s\) gca; ToyParts has gates, norms, tokens"):
        param_groups(ToyParts(), TrainConfig(lr_parts={"gca": 2.0}))
    with pytest.raises(ConfigError, match="Toy has no named parts"):
        param_groups(Toy(), TrainConfig(lr_parts={"gates": 2.0}))
    with pytest.raises(ValueError, match="lr_parts"):
        TrainConfig(lr_parts={"gates": 0.0})


@pytest.mark.parametrize("saved_fused", [False, True])
def test_resumed_optimizer_keeps_this_runs_kernel(saved_fused):
    # perf.fused_adamw on resume is the config's choice: load_state_dict alone would restore the
    # saved groups' `fused` flag; the moments and step counts are the saved ones either way.
    m = Toy()
    x = torch.randn(5, 4)
    saved = build_optimizer(m, TrainConfig(), av_module=m.av_encoder, fused=saved_fused)
    for _ in range(2):
        m.norm(m.proj(m.av_encoder(x))).sum().backward()
        saved.step()
    state = saved.state_dict()
    opt = build_optimizer(m, TrainConfig(), av_module=m.av_encoder, fused=not saved_fused)
    load_optimizer_state(opt, state)
    assert all(bool(g["fused"]) is (not saved_fused) for g in opt.param_groups)
    p = m.proj.weight
    assert float(opt.state[p]["step"]) == 2 and torch.equal(opt.state[p]["exp_avg"], saved.state[p]["exp_avg"])
    m.norm(m.proj(m.av_encoder(x))).sum().backward()
    opt.step()  # the restored state runs under this run's kernel
    assert float(opt.state[p]["step"]) == 3
