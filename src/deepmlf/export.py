"""`deepmlf export RUN_DIR`: a self-contained model folder a person can share, load and read.

    EXPORT/
      model.safetensors   trainable weights of one seed's best.pt (the frozen backbone is named, not copied)
      config.yaml         the resolved config it was trained with (stage-1 file reference cleared)
      checkpoint.json     stage, audio/vision dims, feature set, seed, epoch, its validation metrics
      README.md           model card: YAML metadata block (test metrics per seed, mean ± std) + prose

The seed exported is the one with the best *validation* key metric (`train.key_metric` of its
best.pt) unless `seed` is given: choosing on test would leak the test set into the shared model.
`deepmlf.load(EXPORT)` loads the folder like a best.pt.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from .errors import CheckpointError, RunDirError
from .io import atomic_path, write_json, write_text

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
META = "checkpoint.json"
CARD = "README.md"
EXPORT_FORMAT = 1


def _seed_best(run_dir: Path) -> dict[int, Path]:
    from .rundir import seed_dirs

    return {s: d / "best.pt" for s, d in seed_dirs(run_dir).items() if (d / "best.pt").is_file()}


def choose_seed(run_dir: Path, seed: int | None = None) -> tuple[int, dict[str, Any]]:
    """(seed, its best.pt dict): the given seed, or the best on validation among the finished ones."""
    from .metrics import METRIC_DIRECTIONS
    from .train.checkpoint import load_best

    bests = _seed_best(run_dir)
    if not bests:
        raise RunDirError(f"{run_dir}: no seed-*/best.pt (is it a `deepmlf train` run directory?)")
    if seed is not None:
        if seed not in bests:
            raise RunDirError(f"{run_dir}: no best.pt for seed {seed}; seeds with one: {', '.join(map(str, bests))}")
        return seed, load_best(bests[seed])
    done = {s: p for s, p in bests.items() if (p.parent / "DONE").exists()} or bests
    scored = []
    for s, p in done.items():
        ckpt = load_best(p)
        key = ckpt["config"]["train"]["key_metric"]
        value = ckpt.get("metrics", {}).get(key, math.nan)
        sign = 1.0 if METRIC_DIRECTIONS.get(key, "min") == "min" else -1.0
        scored.append((math.inf if math.isnan(value) else sign * value, s, ckpt))
    _, s, ckpt = min(scored, key=lambda t: (t[0], t[1]))
    return s, ckpt


def _metrics_block(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    if not path.is_file():
        return {}
    res = json.loads(path.read_text())
    return {"dataset": res.get("dataset"), "n_seeds": res.get("n_seeds"), "std_ddof": res.get("std_ddof", 0),
            "per_seed": res.get("per_seed", {}), "mean": res.get("mean", {}), "std": res.get("std", {})}


def _card(meta: dict[str, Any], cfg: dict[str, Any], results: dict[str, Any]) -> str:
    fs = meta.get("feature_set") or {}
    metadata = {
        "library_name": "deepmlf",
        "tags": ["multimodal-sentiment-analysis", "deepmlf", str(meta["stage"])],
        "base_model": cfg["model"]["backbone"],
        "deepmlf": {
            "format": EXPORT_FORMAT,
            "exported_seed": meta["seed"],
            "selected_on": f"validation {cfg['train']['key_metric']}",
            "feature_set": fs.get("id"),
            "audio_dim": meta["audio_dim"],
            "vision_dim": meta["vision_dim"],
            "test_metrics": results or None,
        },
    }
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    lines = [f"---\n{front}---", "", f"# DeepMLF on {results.get('dataset') or cfg['data']['dataset']}", ""]
    lines.append(f"Trainable weights of seed {meta['seed']} (chosen on validation {cfg['train']['key_metric']}), "
                 f"backbone `{cfg['model']['backbone']}` (frozen; not included), MM blocks after layers "
                 f"{cfg['model']['mm_layers']}, {cfg['model']['n_fusion']} fusion tokens.")
    lines.append("")
    lines.append(f"Inputs: audio {meta['audio_dim']}-d and vision {meta['vision_dim']}-d frames from "
                 + (f"feature set `{fs['id']}` (`deepmlf features extract --feature-set {fs.get('name')}`)."
                    if fs else "features with no recorded feature set (e.g. MMSA's processed files)."))
    if results.get("per_seed"):
        names = list(results["mean"])
        lines += ["", "## Test metrics", "", "| seed | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for s, m in results["per_seed"].items():
            lines.append(f"| {s} | " + " | ".join(f"{m[k]:.4f}" for k in names) + " |")
        lines.append("| mean ± std | " + " | ".join(f"{results['mean'][k]:.4f} ± {results['std'][k]:.4f}"
                                                   for k in names) + " |")
        lines.append("")
        lines.append("Accuracies and F1 are fractions; std is the population std (ddof=0), as MMSA reports it.")
    lines += ["", "## Use", "", "```python", "import deepmlf", "model = deepmlf.load('THIS_FOLDER')",
              "model.predict_video('clip.mp4')" if fs else "model.predict(text=..., audio=..., vision=...)", "```", ""]
    return "\n".join(lines)


def export_run(run_dir: str | Path, out: str | Path, *, seed: int | None = None) -> Path:
    """Write the export folder of `run_dir` to `out` (see module docstring); returns `out`."""
    from safetensors.torch import save_file

    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: not a directory (expected a `deepmlf train` run directory)")
    seed, ckpt = choose_seed(run_dir, seed)
    cfg = json.loads(json.dumps(ckpt["config"]))
    cfg["model"]["av_encoder"]["checkpoint"] = None  # the weights below hold the whole AV encoder
    meta = {
        "format": EXPORT_FORMAT,
        "stage": ckpt.get("stage", "stage2"),
        "audio_dim": int(ckpt["audio_dim"]),
        "vision_dim": int(ckpt["vision_dim"]),
        "feature_set": ckpt.get("feature_set"),
        "seed": seed,
        "epoch": ckpt.get("epoch"),
        "valid_metrics": ckpt.get("metrics", {}),
        "source": str(run_dir.resolve() / f"seed-{seed}" / "best.pt"),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in ckpt["model"].items()}
    if not tensors:
        raise CheckpointError(f"{meta['source']}: holds no weights")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "deepmlf_stage": meta["stage"],
                                               "feature_set": (meta["feature_set"] or {}).get("id", "")})
    write_text(out / CONFIG, yaml.safe_dump(cfg, sort_keys=False))
    write_json(out / META, meta)
    write_text(out / CARD, _card(meta, cfg, _metrics_block(run_dir)))
    return out


def read_export(folder: str | Path) -> dict[str, Any]:
    """An export folder as a best.pt-layout dict (what `train.run.model_from_checkpoint_dict` takes)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, META):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: no {name}; not a `deepmlf export` folder")
    meta = json.loads((folder / META).read_text())
    return {"model": load_file(str(folder / WEIGHTS)), "config": yaml.safe_load((folder / CONFIG).read_text()),
            "audio_dim": meta["audio_dim"], "vision_dim": meta["vision_dim"], "stage": meta["stage"],
            "feature_set": meta.get("feature_set"), "epoch": meta.get("epoch"), "metrics": meta.get("valid_metrics", {})}
