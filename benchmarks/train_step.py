"""Time full optimiser steps of DeepMLF on the real SmolLM2-135M (stage 2, as `deepmlf train` runs them).

Model: the `demo` preset (SmolLM2-135M-Instruct, 30 layers, D=576; MM blocks after layers 25..29,
n_f = 8, full FFW copies) unless --preset/--set say otherwise; --random-backbone gpt2-base times a
randomly initialised GPT-2-base-shaped LM (no weights needed). Batches: random ones shaped like the
preset's dataset (MOSI: audio 375x5, vision 500x20; MOSEI: 500x74, 500x35; SIMS: 400x33, 55x709),
text right-padded to --text-len tokens (default 50 as for MOSI/MOSEI). On CUDA, peak memory too.
One step = forward + backward + gradient clipping + AdamW step (the loop's optimiser and groups),
in training mode under the configured mixed precision. After --warmup steps, --steps steps are
timed; the median, mean and throughput are printed.

    .venv/bin/python benchmarks/train_step.py [--steps 5] [--batch-size 32] [--threads N] [--device cuda]
    .venv/bin/python benchmarks/train_step.py --preset mosei-base --random-backbone gpt2-base \
        --set train.mixed_precision=bf16 --device cuda --steps 20      # the one-GPU figure
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from deepmlf.backbones import load_backbone
from deepmlf.config import load_config
from deepmlf.model import build_model
from deepmlf.train.loop import resolve_mixed_precision
from deepmlf.train.optim import build_optimizer, grad_clip_parameters
from shapes import FEATURES, RANDOM_BACKBONES, random_batch

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], dest="sets", help="config override KEY=VALUE")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--text-len", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--one-pass", action="store_true",
                    help="run the frozen prefix as one pass over T+K tokens (the reference path) instead of "
                         "text under no_grad + fusion tokens (MultimodalLM.split_prefix)")
    ap.add_argument("--random-backbone", choices=sorted(RANDOM_BACKBONES), default=None,
                    help="a randomly initialised LM of this shape instead of model.backbone (no weights needed)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(preset=args.preset, overrides=[
        "model.av_encoder.init=random_tune", f"data.max_text_len={args.text_len}", *args.sets])
    t0 = time.perf_counter()
    if args.random_backbone:
        backbone = RANDOM_BACKBONES[args.random_backbone]()
        if cfg.model.dtype == "bfloat16":
            backbone.model.to(torch.bfloat16)
    else:
        backbone = load_backbone(cfg.model.backbone, dtype=cfg.model.dtype)
    load_s = time.perf_counter() - t0
    (la, da), (lv, dv) = FEATURES[cfg.data.dataset]
    model = build_model(cfg, audio_dim=da, vision_dim=dv, backbone=backbone).to(args.device)
    model.train()
    model.lm.split_prefix = not args.one_pass
    opt = build_optimizer(model, cfg.train, av_module=model.av_encoder)
    clip = grad_clip_parameters(opt, exclude_groups=("av", "av_no_decay"))
    mp = resolve_mixed_precision(cfg.train.mixed_precision) if args.device != "cpu" else "no"
    amp = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=mp == "bf16")
    counts = model.parameter_counts()
    vocab = backbone.vocab_size

    def step(seed: int) -> float:
        batch = random_batch(args.batch_size, args.text_len, vocab, dataset=cfg.data.dataset, seed=seed).to(args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        with amp:
            out = model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_value_(clip, cfg.train.clip_grad or float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t

    for i in range(args.warmup):
        step(1000 + i)
    times = [step(i) for i in range(args.steps)]
    med = statistics.median(times)
    print(f"backbone {args.random_backbone + ' (random init)' if args.random_backbone else cfg.model.backbone} ({backbone.n_layers} layers, D={backbone.hidden_size}), "
          f"MM blocks after {cfg.model.mm_layers}, n_f={cfg.model.n_fusion}, ffw={cfg.model.ffw}, "
          f"lambda_lm={cfg.loss.lambda_lm}, prefix {'one pass' if args.one_pass else 'split'}")
    print(f"parameters: {counts['trainable']:,} trainable / {counts['total']:,} total; backbone load {load_s:.1f} s")
    print(f"device {args.device} (threads {torch.get_num_threads()}), mixed precision {mp}, batch {args.batch_size}, "
          f"text {args.text_len} + {cfg.model.n_fusion} fusion tokens, AV {la}/{lv} frames "
          f"-> {cfg.model.av_encoder.av_len} steps")
    print(f"optimiser step: median {med:.3f} s, mean {statistics.mean(times):.3f} s, "
          f"min {min(times):.3f} s over {len(times)} steps; {args.batch_size / med:.1f} samples/s")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
