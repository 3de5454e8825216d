"""Parameter counts of DeepMLF presets and the forward+backward time of the demo-sized model.

Backbones are random, built in code with the real shapes (no weights needed, nothing downloaded):
  (a) `mosei-base` on a GPT-2-base-shaped LM (GPT2Config(): 12 layers, D=768, vocab 50257),
      MOSEI dims audio 74 / vision 35;
  (b) `demo` (SmolLM2-135M shape: 30 layers, D=576, 9 heads, 3 kv heads, vocab 49152, tied
      embeddings; MM blocks after layers 25..29, n_f = 8), MOSI dims audio 5 / vision 20.
Timing: (b) at batch 32, max_text_len 50 (+ 8 fusion tokens), training mode, one warm-up
step, then the median of --repeats steps. CPU timings on a shared machine are noisy.

    .venv/bin/python benchmarks/param_counts.py [--repeats 3] [--threads 2] [--no-timing]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from deepmlf.backbones.adapter import Backbone
from deepmlf.backbones.tiny import byte_tokenizer
from deepmlf.config import load_config
from deepmlf.data.batch import Batch
from deepmlf.model import build_model


def gpt2_base_shaped() -> Backbone:
    return Backbone(model=GPT2LMHeadModel(GPT2Config()).eval(), tokenizer=byte_tokenizer(), name="gpt2-base-shaped")


def smollm2_135m_shaped() -> Backbone:
    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True,
    )
    return Backbone(model=LlamaForCausalLM(cfg).eval(), tokenizer=byte_tokenizer(), name="smollm2-135m-shaped")


def random_batch(B: int, T: int, *, audio_dim: int, vision_dim: int, la: int = 375, lv: int = 500) -> Batch:
    g = torch.Generator().manual_seed(0)
    text_len = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < text_len[:, None]).long()
    return Batch(
        input_ids=torch.randint(0, 49152, (B, T), generator=g), attention_mask=mask,
        audio=torch.randn(B, la, audio_dim, generator=g), audio_lengths=torch.randint(50, la + 1, (B,), generator=g),
        vision=torch.randn(B, lv, vision_dim, generator=g), vision_lengths=torch.randint(50, lv + 1, (B,), generator=g),
        labels=torch.empty(B).uniform_(-3, 3, generator=g), ids=[str(i) for i in range(B)],
    )


def time_steps(model, batch: Batch, repeats: int) -> tuple[float, float]:
    """(median forward+backward seconds, median eval forward seconds)."""
    model.train()
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        model(batch).loss.backward()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    model.eval()
    fwd = []
    with torch.no_grad():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            model(batch)
            if i:
                fwd.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.median(fwd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-timing", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    cfg_a = load_config(preset="mosei-base")
    model_a = build_model(cfg_a, audio_dim=74, vision_dim=35, backbone=gpt2_base_shaped())
    rows.append(("(a) mosei-base, GPT-2 base shape, 7 MM blocks", cfg_a, model_a.parameter_counts()))
    del model_a

    cfg_b = load_config(preset="demo", overrides=["data.max_text_len=50"])
    model_b = build_model(cfg_b, audio_dim=5, vision_dim=20, backbone=smollm2_135m_shaped())
    rows.append(("(b) demo, SmolLM2-135M shape, 5 MM blocks", cfg_b, model_b.parameter_counts()))

    print(f"{'model':48} {'trainable':>12} {'total':>13} {'trainable %':>11}")
    for name, _, c in rows:
        print(f"{name:48} {c['trainable']:>12,} {c['total']:>13,} {100 * c['trainable'] / c['total']:>10.1f}%")
    for name, cfg, c in rows:
        print(f"\n{name}: mm_layers={cfg.model.mm_layers} n_fusion={cfg.model.n_fusion} ffw={cfg.model.ffw}")
        for module, v in c["by_module"].items():
            print(f"  {module:14} trainable {v['trainable']:>12,}   total {v['total']:>12,}")

    if not args.no_timing:
        B, T = 32, cfg_b.data.max_text_len
        batch = random_batch(B, T, audio_dim=5, vision_dim=20)
        step, fwd = time_steps(model_b, batch, args.repeats)
        print(
            f"\n(b) batch {B} x ({T} text + {cfg_b.model.n_fusion} fusion) tokens, {torch.get_num_threads()} threads: "
            f"forward+backward {step:.2f} s (median of {args.repeats}), eval forward {fwd:.2f} s"
        )


if __name__ == "__main__":
    main()
