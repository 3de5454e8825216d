"""Deep-path diagnostics of DeepMLF on the fusion probe (issue 8 item 1; docs/deep-fusion.md).

Builds the `demo` preset (or --preset) on its real backbone, takes one training batch of the
probe (`deepmlf data synth`, n=1000, seed 0, unless --probe names a file) and prints
`deepmlf.diagnostics.deep_fusion_report` as JSON: gradient norms per part, the fusion tokens'
and the residual stream's RMS against each branch's, where the fusion tokens attend, the
cross-attention's entropy, and the gates' Adam bound over the recipe's optimiser steps.
--set overrides compare variants (e.g. --set model.gca_scale=16); --checkpoint reads a trained
best.pt's weights (state after training) instead of the initial ones.

    PYTHONPATH=src .venv/bin/python benchmarks/deep_fusion.py [--set KEY=VALUE ...] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import torch

from deepmlf.config import load_config
from deepmlf.data import load_mmsa, make_loader
from deepmlf.data.synth import write_probe
from deepmlf.diagnostics import deep_fusion_report
from deepmlf.model import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="config override KEY=VALUE")
    ap.add_argument("--probe", type=Path, default=None, help="an MMSA pickle (default: the demo's probe, generated)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a stage-2 best.pt to load the weights from")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)

    probe = args.probe
    if probe is None:
        probe = Path(tempfile.mkdtemp()) / "probe.pkl"
        write_probe(probe, n=1000, seed=0)
    cfg = load_config(preset=args.preset, overrides=["model.av_encoder.init=random_tune", *args.sets,
                                                     f"data.path={probe}"])
    data = load_mmsa(probe, dataset=cfg.data.dataset)
    train = data.splits["train"]
    model = build_model(cfg, audio_dim=train.audio_dim, vision_dim=train.vision_dim)
    if args.checkpoint is not None:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        model.load_trainable_state_dict(state["model"])
    tok = model.lm.backbone.tokenizer
    loader = make_loader(train, tok, max_text_len=cfg.data.max_text_len, batch_size=args.batch_size,
                         shuffle=True, seed=0)
    batch = next(iter(loader))
    steps = cfg.train.max_epochs * math.ceil(len(train) / (cfg.data.batch_size * cfg.train.grad_accum))
    report = deep_fusion_report(model, batch, gate_lr=cfg.train.lr, steps=steps)
    report["config"] = {"preset": args.preset, "overrides": args.sets}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
