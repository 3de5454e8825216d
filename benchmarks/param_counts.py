"""Trainable vs total parameters of DeepMLF presets, on random backbones with the real shapes.

  (a) `mosei-base` on a GPT-2-base-shaped LM, MOSEI dims (audio 74, vision 35);
  (b) `demo` on a SmolLM2-135M-shaped LM (MM blocks after layers 25..29, n_f = 8), MOSI dims.

    .venv/bin/python benchmarks/param_counts.py

Step times: benchmarks/train_step.py.
"""

from __future__ import annotations

import torch

from deepmlf.config import load_config
from deepmlf.model import build_model
from shapes import FEATURES, gpt2_base_shaped, smollm2_135m_shaped


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for name, preset, make in (
        ("(a) mosei-base, GPT-2 base shape, 7 MM blocks", "mosei-base", gpt2_base_shaped),
        ("(b) demo, SmolLM2-135M shape, 5 MM blocks", "demo", smollm2_135m_shaped),
    ):
        cfg = load_config(preset=preset)
        (_, da), (_, dv) = FEATURES[cfg.data.dataset]
        model = build_model(cfg, audio_dim=da, vision_dim=dv, backbone=make())
        rows.append((name, cfg, model.parameter_counts()))
        del model

    print(f"{'model':48} {'trainable':>12} {'total':>13} {'trainable %':>11}")
    for name, _, c in rows:
        print(f"{name:48} {c['trainable']:>12,} {c['total']:>13,} {100 * c['trainable'] / c['total']:>10.1f}%")
    for name, cfg, c in rows:
        print(f"\n{name}: mm_layers={cfg.model.mm_layers} n_fusion={cfg.model.n_fusion} ffw={cfg.model.ffw}")
        for module, v in c["by_module"].items():
            print(f"  {module:14} trainable {v['trainable']:>12,}   total {v['total']:>12,}")


if __name__ == "__main__":
    main()
