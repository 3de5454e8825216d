"""Where one training step's time goes (issue 14): torch.profiler over one step of a
`benchmarks/speed.py` variant (default: the presets' "all -ckpt +pack"), grouped by operator
and by part of the model (figures in benchmarks/RESULTS.md).

    /work/bin/cpu1 .venv/bin/python benchmarks/profile_step.py --preset mosei-base --batch-size 8

Parts: forward ops are attributed to the innermost tagged module they run in (record_function
ranges pushed by forward hooks); backward nodes to the part whose forward op created them (the
profiler's sequence numbers link a backward node to its forward op). Frozen decoder layers are
split into attention and MLP; MM blocks into GCA (norm, cross-attention, gate) and the FFW copy
(norm, FFW, gate); "mm wrapper" is what DecoderLayerWithMM does around them (slices, cat); "lm
head + loss" is the chunked head and its cross-entropy; "heads" the task/text/AV/fusion heads;
"optimizer" AdamW's step, "clip" the gradient clipping. Everything not inside a tagged module is
"other" (the embedding, position ids, masks, gathers, the loss terms).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).parent))
import speed  # noqa: E402
from speed import PRESET_SHAPES, VARIANTS, Switches, make_batch  # noqa: E402

from deepmlf.backbones.shaped import shaped_backbone  # noqa: E402
from deepmlf.config import load_config  # noqa: E402
from deepmlf.model import build_model  # noqa: E402
from deepmlf.model.mm_block import MMBlock  # noqa: E402
from deepmlf.model.multimodal_lm import DecoderLayerWithMM  # noqa: E402
from deepmlf.train.optim import build_optimizer, grad_clip_parameters  # noqa: E402

TAG = "part::"


def tag_modules(model: nn.Module) -> list:
    """Forward hooks pushing a record_function range named after each part of the model."""
    parts: dict[nn.Module, str] = {}
    lm = model.lm
    layers = lm.backbone.layers if hasattr(lm.backbone, "layers") else None
    for name, m in model.named_modules():
        cls = type(m).__name__
        if isinstance(m, MMBlock):
            parts[m.attn] = "mm gca"
            parts[m.norm_attn] = "mm gca"
            parts[m.gate_attn] = "mm gca"
            if m.ffw is not None:
                parts[m.ffw] = "mm ffw copy"
                parts[m.norm_ffw] = "mm ffw copy"
                parts[m.gate_ffw] = "mm ffw copy"
        elif isinstance(m, DecoderLayerWithMM):
            parts[m] = "mm wrapper"
        elif name.startswith("av_encoder") and name.count(".") == 0:
            parts[m] = "av encoder"
        elif name == "av_norm":
            parts[m] = "av encoder"
        elif name.startswith("heads") and name.count(".") == 0:
            parts[m] = "heads"
        elif cls in ("GPT2Attention", "LlamaAttention"):
            parts.setdefault(m, "frozen attention")
        elif cls in ("GPT2MLP", "LlamaMLP"):
            parts.setdefault(m, "frozen mlp")  # an FFW copy is tagged already (setdefault)
        elif cls == "LayerNorm" and "backbone" in name or cls == "LlamaRMSNorm":
            parts.setdefault(m, "frozen norms")
        elif cls in ("GPT2Block", "LlamaDecoderLayer"):
            parts.setdefault(m, "frozen layer (residual adds)")
    del layers
    handles = []
    for m, part in parts.items():
        def pre(mod, args, _p=part):
            rf = record_function(TAG + _p)
            rf.__enter__()
            mod._prof_stack = getattr(mod, "_prof_stack", []) + [rf]

        def post(mod, args, out):
            rf = mod._prof_stack.pop()
            rf.__exit__(None, None, None)

        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    return handles


def part_of(ev) -> str:
    p = ev.cpu_parent
    while p is not None:
        if p.name.startswith(TAG):
            return p.name[len(TAG):]
        p = p.cpu_parent
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mosei-base", choices=sorted(PRESET_SHAPES))
    ap.add_argument("--variant", default="all -ckpt +pack", choices=list(VARIANTS))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1, help="profiled steps (after one warm-up)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--fused-adamw", action="store_true", help="rebuild AdamW with fused=True")
    ap.add_argument("--foreach-adamw", action="store_true", help="rebuild AdamW with foreach=True")
    args = ap.parse_args()

    cfg = load_config(preset=args.preset, overrides=["model.av_encoder.init=random_tune"])
    backbone = shaped_backbone(PRESET_SHAPES[args.preset])
    dataset = cfg.data.dataset if cfg.data.dataset != "infer" else "mosi"
    (la, da), (lv, dv) = speed.FEATURES[dataset if dataset in speed.FEATURES else "sims"]
    model = build_model(cfg, audio_dim=da, vision_dim=dv, backbone=backbone)
    opt = build_optimizer(model, cfg.train, av_module=model.av_encoder)
    if args.fused_adamw or args.foreach_adamw:
        for g in opt.param_groups:
            g["fused" if args.fused_adamw else "foreach"] = True
    clip = grad_clip_parameters(opt, exclude_groups=("av", "av_no_decay"))
    sw = Switches(model, 1024)
    sw.apply(VARIANTS[args.variant])
    T = cfg.data.max_text_len
    batch = make_batch(args.batch_size, T, backbone.vocab_size, dataset, seed=0, lengths=None)
    print(f"preset {args.preset}, variant {args.variant!r}, batch {args.batch_size}, text {T} + "
          f"{cfg.model.n_fusion}, {float(batch.attention_mask.float().mean()) * 100:.0f} % real, longest "
          f"{int(batch.attention_mask.sum(1).max())}; threads {torch.get_num_threads()}", flush=True)
    model.train()

    def step() -> None:
        with record_function(TAG + "forward"):
            out = model(batch)
        with record_function("phase::backward"):
            out.loss.backward()
        with record_function(TAG + "clip"):
            torch.nn.utils.clip_grad_value_(clip, cfg.train.clip_grad or float("inf"))
        with record_function(TAG + "optimizer"):
            opt.step()
        with record_function(TAG + "zero_grad"):
            opt.zero_grad(set_to_none=True)

    step()  # warm-up (and the optimiser's state)
    handles = tag_modules(model)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(args.steps):
            step()
    wall = (time.perf_counter() - t0) / args.steps
    for h in handles:
        h.remove()
    events = prof.events()

    # Forward ops by sequence number -> part (for the backward attribution).
    seq_part: dict[int, str] = {}
    for ev in events:
        if ev.sequence_nr >= 0 and not ev.name.startswith("autograd::") and ev.name.startswith("aten::"):
            seq_part.setdefault(ev.sequence_nr, part_of(ev))

    by_part = defaultdict(float)  # (phase, part) -> self CPU us
    by_op = defaultdict(float)
    by_op_phase = defaultdict(float)
    by_part_op = defaultdict(float)  # (part, op) -> self CPU us
    for ev in events:
        if ev.name.startswith(TAG) or ev.name.startswith("phase::"):
            continue
        us = ev.self_cpu_time_total
        # Backward: the evaluate_function node and everything under it.
        node = ev
        bw = None
        while node is not None:
            if node.name.startswith("autograd::engine::evaluate_function"):
                bw = node
            node = node.cpu_parent
        if bw is not None:
            part = seq_part.get(bw.sequence_nr, "other")
            if part == "other" and "ChunkedHeadCE" in bw.name:
                part = "lm head + loss"
            phase = "backward"
        else:
            part = part_of(ev)
            phase = "forward" if part not in ("clip", "optimizer", "zero_grad") else "step"
            if "ChunkedHeadCE" in ev.name or any("ChunkedHeadCE" in (p.name or "") for p in _parents(ev)):
                part = "lm head + loss"
        by_part[(phase, part)] += us
        by_op[ev.name] += us
        by_op_phase[(phase, ev.name)] += us
        by_part_op[(part, ev.name)] += us
    total = sum(by_part.values())
    print(f"\nwall {wall:.3f} s/step (profiled; profiler overhead included), self CPU total {total / 1e6 / args.steps:.3f} s/step")
    print("\nby part (self CPU time of every op, backward attributed to the forward op's part):")
    parts = defaultdict(dict)
    for (ph, p), us in by_part.items():
        parts[p][ph] = us
    rows = sorted(parts.items(), key=lambda kv: -sum(kv[1].values()))
    print(f"| part | forward s | backward s | step s | total s | % |")
    print("|---|---:|---:|---:|---:|---:|")
    for p, d in rows:
        tot = sum(d.values())
        print(f"| {p} | {d.get('forward', 0) / 1e6 / args.steps:.3f} | {d.get('backward', 0) / 1e6 / args.steps:.3f} | "
              f"{d.get('step', 0) / 1e6 / args.steps:.3f} | {tot / 1e6 / args.steps:.3f} | {tot / total * 100:.1f} |")
    print(f"\nby operator (self CPU, top {args.top}):")
    print("| operator | forward s | backward s | step s | total s | % |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, us in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]:
        f = by_op_phase.get(("forward", name), 0)
        b = by_op_phase.get(("backward", name), 0)
        s = by_op_phase.get(("step", name), 0)
        print(f"| {name} | {f / 1e6 / args.steps:.3f} | {b / 1e6 / args.steps:.3f} | {s / 1e6 / args.steps:.3f} | "
              f"{us / 1e6 / args.steps:.3f} | {us / total * 100:.1f} |")
    print(f"\nper part, its largest operators (self CPU s, forward + backward):")
    for p, _ in rows[:8]:
        ops = sorted(((op, us) for (pp, op), us in by_part_op.items() if pp == p), key=lambda kv: -kv[1])[:6]
        print(f"  {p}: " + ", ".join(f"{op.replace('aten::', '')} {us / 1e6 / args.steps:.3f}" for op, us in ops))
    mm = sum(us for n, us in by_op.items() if n in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul"))
    print(f"\nmatmul ops (mm/addmm/bmm/baddbmm) {mm / total * 100:.1f} % of self CPU time")


def _parents(ev):
    p = ev.cpu_parent
    while p is not None:
        yield p
        p = p.cpu_parent


if __name__ == "__main__":
    main()
