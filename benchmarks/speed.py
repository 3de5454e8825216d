"""Training-step speed and memory of the paper presets' configurations, every `perf` switch on and
off, interleaved step by step in one run (issue 14; figures in benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/speed.py --preset mosei-base --rounds 3 --threads 2 [--check]
    .venv/bin/python benchmarks/speed.py --preset demo --rounds 5 --threads 2
    .venv/bin/python benchmarks/speed.py --preset mosei-base --eval     # evaluation samples/s

Backbones are random, of the real shapes (deepmlf.backbones.shaped; no weights needed). Batches:
random ones shaped like the preset's dataset, transcripts of random real length (--lengths:
`uniform` in [T/3, T] as benchmarks/shapes.py, about a third padding; `probe` / `meld`: lengths
resampled from the demo's fusion probe or the MELD utterances, tokenised with SmolLM2's BPE).
A pool of --pool batches is cycled, so from the second visit on the prefix cache is warm (the
steady state of epoch >= 2).

Variants share one model and one optimiser (the switches are toggled between steps, so the weights
every variant sees are the same kind of random numbers; timing does not depend on their values):
  one-pass        the frozen prefix in one pass over T+K tokens with its graph kept, full-vocabulary
                  logits on every position: structured like the authors' code (the baseline)
  split           the default: text through the frozen prefix under no_grad, then the fusion tokens
  +text_cache     presets with model.text_cache (the demo): the frozen text states once, then the
                  fusion tokens alone (its `all exact` variants keep it on; one-pass/split turn it off)
  +<switch>       the default plus one `perf` switch
  all exact       every exact switch but pack_tokens; `+pack` adds it; `+bf16` adds perf.autocast=bf16
                  (not exact); `+fused_adamw` the optimiser as one fused kernel (perf.fused_adamw)
One step = forward + backward + gradient clipping + AdamW step, in training mode.

Printed per variant: median step time (and IQR) over the rounds, samples/s, speed-up over one-pass,
peak memory (resting RSS of model + optimiser + the variant's cache, plus the largest RSS rise
sampled during its steps; glibc's mmap threshold is pinned so freed tensors leave RSS at once),
FLOPs per step (torch.utils.flop_counter over the executed step, recomputation included, on the
warm-up step) and the achieved fraction of this machine's measured matmul peak (fp32 or bf16);
"paired": the median over rounds of one-pass's step time over the variant's in the same round (the
variants of a round run back to back, so a drifting load cancels more than in the medians' ratio).
--check first compares every exact variant's loss and gradients with one-pass on one batch
(dropout off, so the draws cannot differ).
--grouped draws each batch as length-grouped sampling does (data.length_grouped): a window of
--group-window x B transcripts sorted by length, B consecutive ones taken.
bf16 variants are left out on a CPU without AVX512-BF16/AMX (bf16 matmuls are emulated there, tens
of times slower than fp32: the header prints both rates); --bf16 runs them anyway.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

# Freed tensors must leave RSS at once for the peak figures: a fixed mmap threshold turns off glibc's
# dynamic one (which would keep large freed blocks on the heap). Set before torch allocates anything.
if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and __name__ == "__main__":
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deepmlf.backbones.shaped import shaped_backbone
from deepmlf.config import load_config
from deepmlf.data.batch import Batch
from deepmlf.model import build_model
from deepmlf.model.multimodal_lm import TextStateCache
from deepmlf.model.perf_switches import cpu_has_fast_bf16
from deepmlf.model.prefix_cache import PrefixCache
from deepmlf.train.optim import build_optimizer, grad_clip_parameters

sys.path.insert(0, str(Path(__file__).parent))
from shapes import FEATURES  # noqa: E402

# The LM shape behind each preset (the presets name real weights; the benchmark needs none).
PRESET_SHAPES = {"mosei-base": "gpt2", "mosei-large": "gpt2-large", "mosi": "HuggingFaceTB/SmolLM2-1.7B",
                 "sims": "uer/gpt2-chinese-cluecorpussmall", "simsv2": "uer/gpt2-chinese-cluecorpussmall",
                 "demo": "smollm2-135m"}

EXACT = {"dynamic_padding": True, "lm_loss_chunk": 1024, "prefix_cache": True, "fused_gelu": True,
         "checkpoint_frozen": True}
VARIANTS: dict[str, dict] = {
    "one-pass": {"one_pass": True},
    "split": {},
    "+dynamic_padding": {"dynamic_padding": True},
    "+lm_loss_chunk": {"lm_loss_chunk": 1024},
    "+prefix_cache": {"prefix_cache": True},
    "+fused_gelu": {"fused_gelu": True},
    "+checkpoint_frozen": {"checkpoint_frozen": True},
    "+pack_tokens": {"pack_tokens": True},
    "all exact": dict(EXACT),
    "all exact -ckpt": {**EXACT, "checkpoint_frozen": False},
    "all exact +pack": {**EXACT, "pack_tokens": True},
    "all -ckpt +pack": {**EXACT, "checkpoint_frozen": False, "pack_tokens": True},
    "+fused_adamw": {"fused_adamw": True},
    # the paper presets' perf section now (perf.fused_adamw included)
    "all -ckpt +pack +fused_adamw": {**EXACT, "checkpoint_frozen": False, "pack_tokens": True, "fused_adamw": True},
    # pack_tokens without the attention projections (MLPs and FFWs only): what packing those adds
    "all -ckpt +pack mlp": {**EXACT, "checkpoint_frozen": False, "pack_tokens": True, "pack_attention": False},
    "+text_cache": {"text_cache": True},
    "all exact +bf16": {**EXACT, "autocast": "bf16"},
    "all +bf16 -ckpt": {**EXACT, "checkpoint_frozen": False, "autocast": "bf16"},
    "all +bf16 -ckpt +pack": {**EXACT, "checkpoint_frozen": False, "autocast": "bf16", "pack_tokens": True},
}


# ----------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Largest RSS seen by a 1 ms sampler thread while the block runs."""

    def __enter__(self) -> "PeakRSS":
        self.peak, self._stop = rss_bytes(), False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, rss_bytes())


# ----------------------------------------------------------------------------- machine
def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 3) -> float:
    """Measured FLOP/s of an n x n x n matmul in `dtype` (best of reps): this machine's practical peak."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


# ----------------------------------------------------------------------------- data
def real_lengths(kind: str, cap: int) -> np.ndarray | None:
    if kind == "uniform":
        return None
    from transformers import AutoTokenizer

    from deepmlf.backbones.gguf_cache import backbone_cache_dir

    tok = AutoTokenizer.from_pretrained(str(backbone_cache_dir("smollm2-135m")))
    if kind == "probe":
        from deepmlf.data.synth import make_probe

        texts = [str(t) for s in make_probe(n=1000, seed=0).values() for t in s["raw_text"]]
    else:
        import pandas as pd

        texts = [str(u) for f in sorted(Path("/work/shared/data/meld").glob("*_sent_emo.csv"))
                 for u in pd.read_csv(f)["Utterance"]]
    return np.array([min(max(1, len(x)), cap) for x in tok(texts)["input_ids"]])


def make_batch(B: int, T: int, vocab: int, dataset: str, seed: int, lengths: np.ndarray | None,
               group_window: int = 0, quantile: float | None = None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    (la, da), (lv, dv) = FEATURES[dataset if dataset in FEATURES else "sims"]
    n = B * max(1, group_window)
    if lengths is None:
        text_len = torch.randint(max(1, T // 3), T + 1, (n,), generator=g)
    else:
        text_len = torch.from_numpy(np.random.default_rng(seed).choice(lengths, n))
    if group_window:  # length-grouped sampling: B neighbours in a sorted window of group_window x B
        # `quantile`: the batch at that place in the sorted window (a pool spread over the length
        # distribution, not two draws that may both come from its short tail); else a random one.
        k = (min(group_window - 1, int(quantile * group_window)) if quantile is not None
             else int(torch.randint(0, group_window, (1,), generator=g)))
        text_len = text_len.sort(descending=True).values[k * B:(k + 1) * B]
    mask = (torch.arange(T)[None, :] < text_len[:, None]).long()
    return Batch(
        input_ids=torch.randint(0, vocab, (B, T), generator=g).masked_fill(mask == 0, 0),
        attention_mask=mask,
        audio=torch.randn(B, la, da, generator=g),
        audio_lengths=torch.randint(la // 4, la + 1, (B,), generator=g),
        vision=torch.randn(B, lv, dv, generator=g),
        vision_lengths=torch.randint(lv // 4, lv + 1, (B,), generator=g),
        labels=torch.empty(B).uniform_(-3, 3, generator=g),
        ids=[f"s{seed}-{i}" for i in range(B)],
    )


# ----------------------------------------------------------------------------- switches
class Switches:
    """Toggles the `perf` switches of one built model between steps."""

    def __init__(self, model: nn.Module, cache_mb: int, opt: torch.optim.Optimizer | None = None) -> None:
        self.model = model
        self.opt = opt  # perf.fused_adamw toggles its groups' `fused` flag (AdamW reads it every step)
        self.cache = PrefixCache(cache_mb * 2**20)
        self.text_cache = model.lm.text_cache if model.lm.text_cache is not None else TextStateCache()  # the preset's (model.text_cache) or a spare
        # GPT-2's tanh-GELU modules (backbone MLPs and FFW copies) and their fused replacement.
        self.gelus = [(m, m.act) for m in model.modules()
                      if hasattr(m, "act") and type(m.act).__name__ in ("NewGELUActivation", "GELUTanh")]
        self.fused = nn.GELU(approximate="tanh")

    def apply(self, v: dict) -> None:
        lm = self.model.lm
        lm.split_prefix = not v.get("one_pass", False)
        lm.dynamic_padding = v.get("dynamic_padding", False)
        lm.prefix_cache = self.cache if v.get("prefix_cache") else None
        lm.text_cache = self.text_cache if v.get("text_cache") else None
        lm.autocast_mode = v.get("autocast", "off")
        lm.set_checkpoint_frozen(v.get("checkpoint_frozen", False))
        lm.set_pack_tokens(v.get("pack_tokens", False), attention=v.get("pack_attention", True))
        self.model.lm_loss_chunk = v.get("lm_loss_chunk", 0)
        for m, act in self.gelus:
            m.act = self.fused if v.get("fused_gelu") else act
        for g in self.opt.param_groups if self.opt is not None else ():
            g["fused"] = True if v.get("fused_adamw") else None

    def cache_bytes(self, v: dict) -> int:
        n = self.cache.nbytes if v.get("prefix_cache") else 0
        if v.get("text_cache"):  # its text entries (a BoundedCache counts their bytes)
            n += self.text_cache.nbytes
        return n


# ----------------------------------------------------------------------------- runs
def check_numbers(model, sw: Switches, batch: Batch, variants: dict[str, dict]) -> None:
    """Loss and gradients of every exact variant against one-pass on one batch, dropout off."""
    drops = [(m, m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    for m, _ in drops:
        m.p = 0.0
    attn = [(m, m.attn_dropout) for m in model.modules() if isinstance(getattr(m, "attn_dropout", None), float)]
    for m, _ in attn:
        m.attn_dropout = 0.0
    results = {}
    for name, v in variants.items():
        sw.apply(v)
        for _ in range(2 if v.get("prefix_cache") or v.get("text_cache") else 1):  # the second call reads the cache
            model.zero_grad(set_to_none=True)
            torch.manual_seed(0)
            out = model(batch)
            out.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[name] = (out.loss.detach(), out.y_o.detach(), grads)
    ref_loss, ref_y, ref_g = results["one-pass"]
    print("\nsame numbers (vs one-pass, dropout off):")
    for name, (loss, y, g) in results.items():
        rel = float((g - ref_g).abs().max() / ref_g.abs().max().clamp(min=1e-30))
        print(f"  {name:28s} |Δloss| {float((loss - ref_loss).abs()):.2e}  max|Δy_o| {float((y - ref_y).abs().max()):.2e}"
              f"  max|Δgrad|/max|grad| {rel:.2e}")
    for m, p in drops:
        m.p = p
    for m, p in attn:
        m.attn_dropout = p
    model.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mosei-base", choices=sorted(PRESET_SHAPES))
    ap.add_argument("--set", action="append", default=[], dest="sets", help="config override KEY=VALUE")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's data.batch_size")
    ap.add_argument("--rounds", type=int, default=3, help="timed steps per variant (interleaved)")
    ap.add_argument("--pool", type=int, default=3, help="distinct batches cycled (cache warm from round 2)")
    ap.add_argument("--lengths", default="uniform", choices=("uniform", "probe", "meld"))
    ap.add_argument("--grouped", action="store_true", help="length-grouped batches (data.length_grouped)")
    ap.add_argument("--group-window", type=int, default=50, help="with --grouped: window in batches")
    ap.add_argument("--bf16", action="store_true", help="run bf16 variants even on a CPU without fast bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", default="preset", help="backbone dtype (float32, bfloat16); default: the preset's")
    ap.add_argument("--cache-mb", type=int, default=2048)
    ap.add_argument("--check", action="store_true", help="compare the variants' numbers first")
    ap.add_argument("--eval", action="store_true", help="time evaluation (collect_predictions) instead")
    ap.add_argument("--smoke", action="store_true", help="a seconds-long run of the machinery (vocab 512, MLP 128, batch 4)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    if "one-pass" not in names:
        names.insert(0, "one-pass")

    dtype_set = [f"model.dtype={args.dtype}"] if args.dtype != "preset" else []
    cfg = load_config(preset=args.preset, overrides=["model.av_encoder.init=random_tune", *args.sets, *dtype_set])
    fast_bf16 = cpu_has_fast_bf16()
    # model.text_cache (the demo): the preset's own default; every "all exact" variant keeps it.
    preset_tc = bool(cfg.model.text_cache)
    variants = {}
    for n in names:
        v = dict(VARIANTS[n])
        if v.get("autocast") == "bf16" and not (fast_bf16 or args.bf16):
            continue
        if n == "+text_cache" and not preset_tc:
            continue
        if n.startswith("all") and preset_tc:
            v["text_cache"] = True
        variants[n] = v
    B = args.batch_size or (4 if args.smoke else cfg.data.batch_size)
    T = cfg.data.max_text_len
    shrink = {"vocab_size": 512, "mlp_size": 128} if args.smoke else {}
    backbone = shaped_backbone(PRESET_SHAPES[args.preset], **shrink)
    if cfg.model.dtype == "bfloat16":
        backbone.model.to(torch.bfloat16)
    dataset = cfg.data.dataset if cfg.data.dataset != "infer" else "mosi"
    (la, da), (lv, dv) = FEATURES[dataset if dataset in FEATURES else "sims"]
    model = build_model(cfg, audio_dim=da, vision_dim=dv, backbone=backbone)
    opt = build_optimizer(model, cfg.train, av_module=model.av_encoder)
    clip = grad_clip_parameters(opt, exclude_groups=("av", "av_no_decay"))
    sw = Switches(model, args.cache_mb, opt)
    lengths = real_lengths(args.lengths, T)
    window = args.group_window if args.grouped else 0
    pool = [make_batch(B, T, backbone.vocab_size, dataset, seed=s, lengths=lengths, group_window=window,
                       quantile=(s + 0.5) / args.pool if window else None) for s in range(args.pool)]
    real = float(np.mean([float(b.attention_mask.float().mean()) for b in pool]))
    longest = float(np.mean([int(b.attention_mask.sum(1).max()) for b in pool]))
    # Without AVX512-BF16/AMX bf16 matmuls are emulated (tens of times slower): a small one says so.
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16, *((2048, 3) if fast_bf16 else (512, 1)))
    counts = model.parameter_counts()
    print(f"preset {args.preset}: random {PRESET_SHAPES[args.preset]}-shaped backbone ({backbone.n_layers} layers, "
          f"D={backbone.hidden_size}, {cfg.model.dtype}), MM blocks after {cfg.model.mm_layers}, n_f={cfg.model.n_fusion}, "
          f"ffw={cfg.model.ffw}, augment={cfg.model.augment.kind}, backbone_dropout={cfg.model.backbone_dropout}, "
          f"lambda_lm={cfg.loss.lambda_lm}; {counts['trainable']:,} trainable / {counts['total']:,} parameters")
    print(f"batch {B}, text {T} + {cfg.model.n_fusion} fusion tokens, lengths {args.lengths}"
          f"{' length-grouped (window %d batches)' % window if window else ''}: {real * 100:.0f} % real "
          f"positions, longest transcript per batch {longest:.1f}; threads {torch.get_num_threads()}; "
          f"measured matmul peak {peak32 / 1e9:.0f} GFLOP/s fp32, {peak16 / 1e9:.1f} GFLOP/s bf16 "
          f"(CPU fast bf16: {fast_bf16}); variants: {', '.join(variants)}", flush=True)

    if args.check:
        check_numbers(model, sw, make_batch(min(B, 8), T, backbone.vocab_size, dataset, 99, lengths), variants)

    if args.eval:
        return run_eval(model, sw, pool, variants, cfg, args, bf16=fast_bf16 or args.bf16, text_cache=preset_tc)

    model.train()

    def step(batch: Batch) -> float:
        t = time.perf_counter()
        out = model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_value_(clip, cfg.train.clip_grad or float("inf"))
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    times = {n: [] for n in variants}
    peaks = {n: 0 for n in variants}
    flops = {}
    # Warm-up: a cache variant once per pool batch (fills the cache), then every variant once on the
    # first batch counting FLOPs (in the steady state: cache warm).
    for n, v in variants.items():
        sw.apply(v)
        # Fill the cache (the others need no warm-up beyond the counted step: one model, already
        # warm); not where training bypasses it (backbone dropout on: the paper presets).
        for b in pool if (v.get("prefix_cache") and not cfg.model.backbone_dropout) or v.get("text_cache") else ():
            step(b)
        with FlopCounterMode(display=False) as fc:
            step(pool[0])
        flops[n] = fc.get_total_flops()
        print(f"warm-up {n}: {flops[n] / 1e9:.0f} GFLOP", flush=True)
    resting = rss_bytes()
    order = list(variants)
    for r in range(args.rounds):
        k = r % len(order)
        for n in order[k:] + order[:k]:  # rotate: no variant always runs first
            sw.apply(variants[n])
            base = rss_bytes()
            with PeakRSS() as pk:
                times[n].append(step(pool[r % len(pool)]))
            peaks[n] = max(peaks[n], pk.peak - base)
        # After every round: a run cut short still leaves its table.
        print_table(variants, times, peaks, flops, resting, sw, B, cfg, peak32, peak16, r + 1)


def print_table(variants, times, peaks, flops, resting, sw, B, cfg, peak32, peak16, rounds) -> None:
    ref = statistics.median(times["one-pass"])
    ref_mem = resting + peaks["one-pass"]
    print(f"\nresting RSS (weights, optimiser, pool; caches counted per variant) {resting / 2**30:.2f} GiB; "
          f"{rounds} interleaved rounds\n", flush=True)
    print("| variant | step s (median) | IQR | samples/s | speed-up vs one-pass | peak memory GiB | vs one-pass | "
          "step's rise GiB | vs one-pass | GFLOP/step | achieved % of peak | speed-up, summed rounds | "
          "paired: median of per-round ratios |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, v in variants.items():
        ts = sorted(times[n])
        med = statistics.median(ts)
        q = np.percentile(ts, [25, 75])
        mem = resting + peaks[n] + sw.cache_bytes(v)
        peak = peak16 if v.get("autocast") == "bf16" or cfg.model.dtype == "bfloat16" else peak32
        print(f"| {n} | {med:.3f} | {q[0]:.3f}–{q[1]:.3f} | {B / med:.1f} | {ref / med:.2f}× | {mem / 2**30:.2f} | "
              f"{mem / ref_mem:.2f}× | {peaks[n] / 2**30:.2f} | {peaks[n] / max(1, peaks['one-pass']):.2f}× | {flops[n] / 1e9:.0f} | {flops[n] / med / peak * 100:.0f} % | {sum(times['one-pass']) / sum(ts):.2f}× | "
              f"{statistics.median(a / b for a, b in zip(times['one-pass'], times[n])):.2f}× |")
    print(f"\nprefix cache: {len(sw.cache)} entries, {sw.cache.nbytes / 2**20:.0f} MiB, hits {sw.cache.hits}, "
          f"misses {sw.cache.misses}", flush=True)


def _merge(pool: list[Batch]) -> Batch:
    def cat(name):
        values = [getattr(b, name) for b in pool]
        if name == "ids":
            return sum(values, [])
        return None if values[0] is None else torch.cat(values)

    return Batch(**{f: cat(f) for f in Batch.__dataclass_fields__})


def run_eval(model, sw: Switches, pool: list[Batch], variants: dict, cfg, args, *, bf16: bool,
             text_cache: bool) -> None:
    """Evaluation samples/s: no_grad vs inference_mode, batches of B vs the whole pool in one."""
    from deepmlf.train.evaluate import collect_predictions

    merged = [_merge(pool)]
    n = sum(len(b) for b in pool)
    B = len(pool[0])
    cases = {
        f"one-pass, no_grad, batch {B}": ({"one_pass": True}, False, pool),
        f"default, no_grad, batch {B}": ({}, False, pool),
        f"default, inference_mode, batch {B}": ({}, True, pool),
        f"default, inference_mode, batch {n}": ({}, True, merged),
        f"dynamic padding, inference_mode, batch {n}": ({"dynamic_padding": True}, True, merged),
        f"+ prefix cache (warm), batch {n}": ({"dynamic_padding": True, "prefix_cache": True}, True, merged),
        f"all exact (cache warm), inference_mode, batch {n}": (
            {"dynamic_padding": True, "prefix_cache": True, "lm_loss_chunk": 1024, "fused_gelu": True}, True, merged),
        f"all exact + pack_tokens (cache warm), inference_mode, batch {n}": (
            {"dynamic_padding": True, "prefix_cache": True, "lm_loss_chunk": 1024, "fused_gelu": True,
             "pack_tokens": True}, True, merged),
    }
    if text_cache:
        cases[f"text_cache (warm), inference_mode, batch {n}"] = ({"text_cache": True}, True, merged)
    if bf16:
        cases[f"+ bf16 autocast, batch {n}"] = ({"dynamic_padding": True, "prefix_cache": True, "autocast": "bf16"},
                                                True, merged)
    times = {k: [] for k in cases}
    for k, (v, inf, batches) in cases.items():  # warm-up (fills the cache)
        sw.apply(v)
        collect_predictions(model, batches, inference_mode=inf)
    for r in range(args.rounds):
        for k, (v, inf, batches) in cases.items():
            sw.apply(v)
            t = time.perf_counter()
            collect_predictions(model, batches, inference_mode=inf)
            times[k].append(time.perf_counter() - t)
        print(f"round {r + 1}: " + ", ".join(f"{k}: {times[k][-1]:.2f} s" for k in cases), flush=True)
    ref = statistics.median(times[next(iter(cases))])
    print(f"\nevaluation of {n} clips, {args.rounds} interleaved rounds\n")
    print("| evaluation | s (median) | samples/s | vs one-pass |")
    print("|---|---:|---:|---:|")
    for k in cases:
        med = statistics.median(times[k])
        print(f"| {k} | {med:.3f} | {n / med:.1f} | {ref / med:.2f}× |")


if __name__ == "__main__":
    main()
