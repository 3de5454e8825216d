"""`deepmlf demo`: DeepMLF against its unimodal references on the fusion probe, end to end.

Stages (each announced, each timed):
  1. the probe set (docs/probe-dataset.md), cached under the out dir;
  2. the backbone, loaded once (the first load de-quantises SmolLM2's GGUF file and caches it);
  3. the text-only reference: frozen LM + W_t on x_tK, fitted on cached features;
  4. DeepMLF via `train_run`: stage 1 pre-trains the AV encoder (that model is the AV-only
     reference), stage 2 trains DeepMLF initialised from it;
  5. the AV-only reference scored on the test split, and DeepMLF scored once more with its
     cross-attention branches off (what the deep path adds beyond the task head);
  6. the comparison table and report.md.

Everything lands in the out dir in the layout `deepmlf report` reads (`comparison.json`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rich.console import Console

from ..config import Config, load_config
from ..data.mmsa import load_mmsa
from ..errors import ConfigError
from ..io import write_json
from ..report import COMPARISON_FILE, write_report
from ..tasks import MSATask
from .ablation import ABLATION_NAME, ABLATION_NOTE, FUSION_HEAD_NAME, FUSION_HEAD_NOTE, score_deep_path
from .av_reference import score_av_reference
from .probe_cache import FLOOR_ROWS, ensure_probe
from .table import EXTRA_COLUMNS, ablation_sentence, comparison_table, fusion_head_sentence, fusion_verdict
from .text_reference import extract_features, fit_text_head

DEFAULT_OUT = Path("runs/demo")
PROBE_SEED = 0
# Probe size and the stage-2 epoch budget (the preset's 10 epochs): sized for ≤ 8 minutes on 2 CPU
# cores (benchmarks/RESULTS.md, "Demo wall time"). 2000 clips, not 1000: the fusion path over-fits
# 700 training transcripts (docs/deep-fusion.md item 10); with MM blocks of cross-attention only a
# step is cheap enough to spend the time on data (MAE 0.586 -> 0.420, 4.9 -> 8.8 min at one thread).
# --fast keeps 1000 clips and trains 5 epochs; half that (3 epochs, n=500 was tried with an earlier
# recipe) no longer let DeepMLF beat the text-only reference.
DEMO_N = 2000
FAST_N = 1000
FAST_OVERRIDES = ["train.max_epochs=5", "pretrain.max_epochs=15"]


def demo_size(n: int | None, fast: bool) -> int:
    """Probe clips in all: an explicit `--n` wins, else 2000 (1000 with --fast)."""
    return n if n is not None else (FAST_N if fast else DEMO_N)

MODEL_DIRS = {"DeepMLF": "deepmlf", "text-only": "text-only", "AV-only": "av-only"}
MODEL_NOTES = {
    "DeepMLF": "frozen LM + MM blocks + fusion tokens + AV encoder (stage 2, initialised from stage 1)",
    "text-only": "the same frozen LM, linear head W_t on the last real token x_tK",
    "AV-only": "the stage-1 model: AV encoder + scalar head, no text",
}


@dataclass
class DemoResult:
    out_dir: Path
    metrics: dict[str, dict[str, float]]  # model name -> test metrics (MMSA names)
    noise_floor: dict[str, dict[str, float]]  # FLOOR_ROWS key -> metrics
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    report: Path | None = None
    backbone_dtype: str = "float32"
    ablation: dict[str, float] | None = None  # DeepMLF's test metrics with cross-attention off
    fusion_head: dict[str, float] | None = None  # test metrics of DeepMLF's y_f alone (fusion tokens only)

    @property
    def fusion_wins(self) -> bool:
        return fusion_verdict(self.metrics)[0]


def demo_config(*, probe_path: Path, overrides: list[str] | None = None, fast: bool = False) -> Config:
    """The `demo` preset, --fast settings, then the caller's `key=value` overrides (they win).

    The backbone dtype is the preset's (float32), never picked by timing this machine, so the
    printed table is the same on every CPU up to float rounding."""
    base = list(FAST_OVERRIDES if fast else [])
    cfg = load_config(preset="demo", overrides=base + list(overrides or []) + [f"data.path={probe_path}"])
    if len(cfg.train.seeds) != 1:
        raise ConfigError(f"train.seeds={cfg.train.seeds}: the demo trains one seed; give exactly one")
    if cfg.model.av_encoder.init != "pretrain_tune" or cfg.model.av_encoder.checkpoint:
        raise ConfigError(
            "model.av_encoder: the demo's AV-only reference is its stage-1 model, so it needs "
            "init=pretrain_tune and no checkpoint (stage 1 runs inside the demo)"
        )
    return cfg


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    n: int | None = None,
    fast: bool = False,
    overrides: list[str] | None = None,
    probe_seed: int = PROBE_SEED,
    progress: bool = True,
    console: Console | None = None,
    train_fn: Callable | None = None,
    probe_rule: str = "flip",
    probe_cues: str = "first",
) -> DemoResult:
    """Run the whole demo into `out_dir` and return the three models' test metrics.

    `overrides` are `key=value` config strings on top of the `demo` preset (tests use
    `model.backbone=tiny-gpt2`). Model dirs from an earlier run are replaced; the probe is reused
    when n, seed and preset are unchanged. `train_fn` defaults to `deepmlf.train.train_run`.
    `probe_rule` / `probe_cues` train the same recipe on a probe variant (`deepmlf data synth --rule
    --cues`): a check that the recipe is not tuned to the default probe.
    """
    from ..backbones import load_backbone
    from ..model import build_text_regressor

    if train_fn is None:
        from ..train.run import train_run as train_fn

    console = console or Console()
    out_dir = Path(out_dir)
    n = demo_size(n, fast)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    def banner(step: int, text: str) -> None:
        console.rule(f"[bold]Step {step}/5 · {text}")

    # ------------------------------------------------------------------ 1. data
    banner(1, "fusion probe data")
    t0 = time.perf_counter()
    user_cfg = load_config(preset="demo", overrides=list(overrides or []))  # validate overrides early
    preset = "sims" if user_cfg.data.dataset == "sims" else "mosi"
    probe_path, floor, reused = ensure_probe(out_dir / "probe", n=n, seed=probe_seed, preset=preset,
                                             rule=probe_rule, cues=probe_cues)
    data = load_mmsa(probe_path, dataset=user_cfg.data.dataset)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in data.splits.items())
    console.print(
        f"{'reused' if reused else 'generated'} {probe_path} ({sizes}). Label = text valence, flipped by an "
        "audio 'sarcasm' tone in 30% of clips, plus a vision 'smile' term: no single modality can predict it."
    )
    timings["probe data"] = time.perf_counter() - t0

    # ------------------------------------------------------------------ 2. backbone
    t0 = time.perf_counter()
    cfg = demo_config(probe_path=probe_path, overrides=overrides, fast=fast)
    banner(2, f"backbone {cfg.model.backbone} ({cfg.model.dtype})")
    backbone = load_backbone(cfg.model.backbone, dtype=cfg.model.dtype)
    console.print(
        f"{cfg.model.backbone}: {backbone.n_layers} layers, width {backbone.hidden_size}, "
        f"{backbone.n_parameters:,} frozen parameters, weights in {cfg.model.dtype}"
    )
    timings["backbone load"] = time.perf_counter() - t0

    for sub in MODEL_DIRS.values():  # a demo run replaces the previous one's models
        shutil.rmtree(out_dir / sub, ignore_errors=True)

    # ------------------------------------------------------------------ 3. text-only reference
    banner(3, "text-only reference (frozen LM + linear head)")
    t0 = time.perf_counter()
    seed = cfg.train.seeds[0]
    text_model = build_text_regressor(cfg, backbone=backbone)
    feats = {name: extract_features(text_model, split, cfg, name=name, progress=progress)
             for name, split in data.splits.items()}
    text_metrics = fit_text_head(text_model, feats, cfg, out_dir / MODEL_DIRS["text-only"], seed=seed, progress=progress)
    timings["text-only reference"] = time.perf_counter() - t0
    console.print(f"text-only test MAE {text_metrics['MAE']:.3f}")
    del text_model, feats

    # ------------------------------------------------------------------ 4. DeepMLF (stage 1 + 2)
    banner(4, "DeepMLF: stage 1 (AV encoder pre-training), then stage 2 (fusion)")
    t0 = time.perf_counter()
    run_dir = out_dir / MODEL_DIRS["DeepMLF"]
    # The text reference only read the backbone; DeepMLF wraps a fresh copy's layers in place.
    train_fn(cfg, run_dir, resume=False, progress=progress)
    timings["DeepMLF (stages 1 + 2)"] = time.perf_counter() - t0
    seed_dir = run_dir / f"seed-{seed}"

    # ------------------------------------------------------------------ 5. AV-only reference
    banner(5, "AV-only reference, ablation, report")
    t0 = time.perf_counter()
    av_metrics = score_av_reference(cfg, data, seed_dir / "stage1", out_dir / MODEL_DIRS["AV-only"],
                                    tokenizer=backbone.tokenizer)
    timings["AV-only evaluation"] = time.perf_counter() - t0

    # Does the deep path (fusion tokens reading Z) carry the fusion, or only the task head?
    # y_f alone reads nothing but the fusion tokens; cross-attention off cuts Z out of them.
    t0 = time.perf_counter()
    fusion_head, ablation = score_deep_path(seed_dir / "best.pt", data.splits["test"], dataset=cfg.data.dataset)
    timings["y_f alone + ablation (cross-attention off)"] = time.perf_counter() - t0

    from ..report.rundir import read_metrics

    metrics = {
        "DeepMLF": read_metrics(seed_dir / "test_metrics.json"),
        "text-only": text_metrics,
        "AV-only": av_metrics,
    }
    timings["total"] = time.perf_counter() - t_start
    result = DemoResult(out_dir=out_dir, metrics=metrics, noise_floor=floor, timings=timings,
                        backbone_dtype=cfg.model.dtype, ablation=ablation, fusion_head=fusion_head)
    _write_comparison(result, cfg, n=n, probe_seed=probe_seed)
    result.report = write_report(out_dir)

    console.print(comparison_table(metrics, floor, dataset=cfg.data.dataset,
                                   extra={EXTRA_COLUMNS["y_f"]: fusion_head, EXTRA_COLUMNS["ablation"]: ablation}))
    wins, verdict = fusion_verdict(metrics)
    console.print(("[bold green]" if wins else "[bold yellow]") + verdict)
    console.print(fusion_head_sentence(fusion_head, metrics))
    console.print(ablation_sentence(metrics["DeepMLF"], ablation))
    console.print(f"total wall time {timings['total'] / 60:.1f} min · report: [bold]{result.report}[/]")
    return result


def _write_comparison(result: DemoResult, cfg: Config, *, n: int, probe_seed: int) -> None:
    seed = cfg.train.seeds[0]
    dirs = {"DeepMLF": f"{MODEL_DIRS['DeepMLF']}/seed-{seed}", "text-only": MODEL_DIRS["text-only"],
            "AV-only": MODEL_DIRS["AV-only"]}
    wins, verdict = fusion_verdict(result.metrics)
    from ..data.synth import NOISE_FLOOR_NOTES

    intro = (
        f"`deepmlf demo` trained three models on the **fusion probe** ({n} synthetic clips, seed {probe_seed}, "
        "70/15/15 split; see docs/probe-dataset.md). A clip's label is the valence of one sentiment word in "
        "its transcript, **flipped** when the audio carries a 'sarcastic' tone (30% of clips), **plus** a "
        "'smile' intensity from the video, plus annotation noise. Text alone cannot see the flip, audio-video "
        "alone cannot see the word, so only a model that fuses them can approach the oracle.\n\n"
        f"Backbone `{cfg.model.backbone}` (frozen, {cfg.model.dtype}); MM blocks after layers "
        f"{cfg.model.mm_layers}; {cfg.model.n_fusion} fusion tokens. All three models are scored on the same "
        f"test split.\n\n**Result:** {verdict} {fusion_head_sentence(result.fusion_head, result.metrics)} "
        f"{ablation_sentence(result.metrics['DeepMLF'], result.ablation)}"
    )
    write_json(result.out_dir / COMPARISON_FILE, {
        "title": "DeepMLF demo: fusion against each modality alone",
        "dataset": cfg.data.dataset,
        "task": MSATask.of_config(cfg).spec(),
        "config_dir": MODEL_DIRS["DeepMLF"],
        "intro_md": intro,
        "fusion_wins": wins,
        # The AV-only model *is* stage 1: its curves are shown once, under AV-only.
        "models": [{"name": k, "dir": dirs[k], "note": MODEL_NOTES[k], "stage1_curves": False} for k in MODEL_DIRS],
        "references": [
            {"name": FLOOR_ROWS[k], "metrics": result.noise_floor[k], "note": NOISE_FLOOR_NOTES[k]}
            for k in FLOOR_ROWS if k in result.noise_floor
        ] + ([{"name": FUSION_HEAD_NAME, "metrics": result.fusion_head, "note": FUSION_HEAD_NOTE}]
             if result.fusion_head else [])
          + ([{"name": ABLATION_NAME, "metrics": result.ablation, "note": ABLATION_NOTE}] if result.ablation else []),
        "timings": result.timings,
        "probe": {"n": n, "seed": probe_seed},
    })
