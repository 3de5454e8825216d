"""Several training processes (DDP): batch sharding, and a real two-process CPU run via torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from deepmlf.data.dataset import ShardedBatchSampler
from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.io import read_jsonl


def _batches(n: int, bs: int, seed: int):
    g = torch.Generator()
    g.manual_seed(seed)
    return BatchSampler(RandomSampler(range(n), generator=g), batch_size=bs, drop_last=False), g


def test_shards_partition_the_single_process_order():
    full, _ = _batches(50, 4, seed=3)  # 13 batches
    order = list(full)
    shards = []
    for rank in range(3):
        base, g = _batches(50, 4, seed=3)
        s = ShardedBatchSampler(base, rank, 3)
        shards.append(list(s))
        assert len(s) == len(shards[-1]) == 4  # 13 // 3: every process steps the same number of times
    assert sorted(map(tuple, sum(shards, []))) == sorted(map(tuple, order[:12]))  # disjoint, remainder dropped
    assert shards[1] == [order[i] for i in (1, 4, 7, 10)]


def test_generators_advance_alike_on_every_process():
    states = []
    for rank in range(2):
        base, g = _batches(30, 4, seed=0)
        for _ in range(2):  # two epochs
            list(ShardedBatchSampler(base, rank, 2))
        states.append(g.get_state())
    base, g = _batches(30, 4, seed=0)
    for _ in range(2):
        list(base)
    assert torch.equal(states[0], states[1]) and torch.equal(states[0], g.get_state())


TINY = [
    "model.backbone=tiny-gpt2", "model.mm_layers=[1,3]", "model.n_fusion=3", "model.n_heads=4", "model.head_hidden=8",
    "model.av_encoder.d_av=6", "model.av_encoder.n_heads=2", "model.av_encoder.n_layers=1", "model.av_encoder.av_len=5",
    "data.max_text_len=12", "data.batch_size=4", "train.grad_accum=2", "train.max_epochs=2",
    "train.mixed_precision=no", "pretrain.max_epochs=2", "pretrain.grad_accum=1",
]


@pytest.mark.slow
def test_two_process_cpu_run_trains_once_and_writes_once(tmp_path):
    data = write_mmsa_pickle(tmp_path / "toy.pkl", n_per_split=(24, 8, 8), la=20, lv=20)
    run_dir = tmp_path / "run"
    sets = [a for s in TINY for a in ("--set", s)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "deepmlf", "train", *sets, "--data", str(data), "--out", str(run_dir), "--seeds", "7", "--quiet"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    seed_dir = run_dir / "seed-7"
    done = json.loads((seed_dir / "DONE").read_text())
    assert done["processes"] == 2
    # 24 samples / batch 4 = 6 batches, 3 per process, accumulation 2 -> 2 optimiser steps per epoch.
    assert done["global_step"] == 2 * done["epochs"]
    history = read_jsonl(seed_dir / "history.jsonl")
    assert [r["epoch"] for r in history] == list(range(1, done["epochs"] + 1))  # one writer, no duplicate lines
    assert len(read_jsonl(seed_dir / "stage1" / "history.jsonl")) == 2
    metrics = json.loads((seed_dir / "test_metrics.json").read_text())
    assert 0 <= metrics["Has0_acc_2"] <= 1 and metrics["MAE"] > 0
    assert proc.stdout.count("seed 7 test:") + proc.stderr.count("seed 7 test:") == 1  # printed by the main process
