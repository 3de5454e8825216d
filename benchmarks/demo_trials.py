"""Stage-2-only trials of the demo recipe on a reused stage-1 checkpoint (docs/deep-fusion.md, "Recipe trials").

Stage 1 (the AV encoder's pre-training) does not depend on the stage-2 settings compared here, so it
is trained once per probe variant (OUT/s1-RULE-CUES) and every trial starts stage 2 from its best.pt
(`model.av_encoder.checkpoint`). Prints the validation MAE per epoch, then one JSON line: test MAE,
the fusion head y_f alone, cross-attention off at test, stage-2 seconds. One thread.

    PYTHONPATH=src .venv/bin/python benchmarks/demo_trials.py NAME [--rule gate --cues swapped] \
        [--set KEY=VALUE ...] [--out /tmp/demo-trials]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepmlf.config import load_config
from deepmlf.data.mmsa import load_mmsa
from deepmlf.demo.ablation import score_deep_path
from deepmlf.demo.pipeline import DEMO_N, PROBE_SEED
from deepmlf.demo.probe_cache import ensure_probe
from deepmlf.train.run import pretrain_av, train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--rule", default="flip")
    ap.add_argument("--cues", default="first")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, default=Path("/tmp/demo-trials"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tag = f"{args.rule}-{args.cues}"
    probe, floor, _ = ensure_probe(args.out / f"probe-{tag}", n=DEMO_N, seed=PROBE_SEED, preset="mosi",
                                   rule=args.rule, cues=args.cues)
    base = [f"data.path={probe}"]
    stage1 = args.out / f"s1-{tag}"
    ckpt = stage1 / "seed-1111" / "stage1" / "best.pt"
    if not ckpt.exists():
        pretrain_av(load_config(preset="demo", overrides=base), stage1, progress=False)
    cfg = load_config(preset="demo", overrides=base + [f"model.av_encoder.checkpoint={ckpt}"] + args.overrides)
    run = args.out / "runs" / args.name
    t0 = time.perf_counter()
    train_run(cfg, run, overwrite=True, progress=False)
    seconds = time.perf_counter() - t0
    seed_dir = run / f"seed-{cfg.train.seeds[0]}"
    for line in (seed_dir / "history.jsonl").read_text().splitlines():
        h = json.loads(line)
        print(f"epoch {h['epoch']:>2}  {h['time_s']:6.1f} s  valid MAE {h['valid']['MAE']:.4f}")
    test = json.loads((seed_dir / "test_metrics.json").read_text())
    y_f, off = score_deep_path(seed_dir / "best.pt", load_mmsa(probe, dataset="mosi").splits["test"], dataset="mosi")
    print(json.dumps({"name": args.name, "probe": tag, "overrides": args.overrides, "stage2_s": round(seconds, 1),
                      "test_MAE": round(test["MAE"], 4), "y_f_MAE": round(y_f["MAE"], 4),
                      "xattn_off_MAE": round(off["MAE"], 4), "rise": round(off["MAE"] / test["MAE"] - 1, 3),
                      "oracle_MAE": round(floor["oracle"]["MAE"], 4)}))


if __name__ == "__main__":
    main()
