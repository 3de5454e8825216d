"""Run orchestration for the MSA config tree: data once, then per seed stage 1 (AV pre-training)
and stage 2 (the model of `model.arch`, DeepMLF by default), best checkpoint re-loaded for test,
results aggregated over seeds (paper §5.5: mean ± std).

The task (`deepmlf.tasks.MSATask` of `data.dataset`) decides every metric; it is written to the
run dir as `task.json`, so results, sweeps and reports read it without the config tree. The
seed-level pieces (`aggregate`, `write_results`, `results_table`) take any task, for other
runners (ERC) that share the loop and the run-dir layout.

Writes the run directory of docs/contracts.md ("Run directory"). A seed with `DONE` is never
re-run; a finished stage 1 (`stage1/best.pt` and a `stage1/last.pt` that says it ended) is reused,
so `deepmlf pretrain-av --out RUN` followed by `deepmlf train --out RUN` trains stage 2 on it.
Unfinished work is continued with `resume=True`, discarded with `overwrite=True` (the whole run
is started over), and otherwise refused: a run never deletes epochs without being told to.
Before anything is written, `preflight` checks the config against the backbone and the file;
then the run dir is locked (`deepmlf.runlock`: one writer at a time) for the whole run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from rich.console import Console
from rich.table import Table

from ..config import DATASET_INFER, Config, config_from_dict, load_yaml
from ..data import load_mmsa, make_loader
from ..data.mmsa import MMSAData, Split
from ..errors import CheckpointError, ConfigError, DataError
from ..io import check_output_dir, read_jsonl, remove_orphaned_temps, write_json, write_text
from ..model.registry import Arch, build_arch, get_arch
from ..errors import RunDirError
from ..rundir import TASK_FILE, seed_dirs, seed_test_metrics
from ..runlock import run_lock
from ..tasks import MSATask, Task
from .checkpoint import BEST, LAST, load_best, load_last
from .evaluate import Predictions, collect_predictions
from .distributed import is_main_process, process_info, say, wait_for_everyone
from .loop import EpochCallback, FitResult, Stage, fit, make_accelerator
from .preflight import check_backbone, check_selection, resolve_dataset
from .optim import (
    build_optimizer,
    build_plateau,
    build_pretrain_optimizer,
    build_scheduler,
    grad_clip_parameters,
    steps_per_epoch,
)

CONFIG_FILE = "config.yaml"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
DONE = "DONE"
STAGE1_DIR = "stage1"
STAGE1_KEY_METRIC = "Loss"  # the authors' BI_ENC selects on validation L1
_AV_GROUPS = ("av", "av_no_decay")
# Settings that may differ between invocations on one run dir without changing what is trained.
_NOT_COMPARED = ("train.seeds", "data.path", "data.num_workers", "data.eval_batch_size", "train.log_with")
TRACKING_DIR = "tracking"  # accelerate trackers (train.log_with) write under RUN_DIR/tracking/seed-S

console = Console(stderr=True)


@dataclass
class RunResult:
    run_dir: Path
    task: Task
    metric_names: list[str]  # the task's metric names, in its order (MMSA's for msa)
    per_seed: dict[int, dict[str, float]]  # seed -> test metrics of its best checkpoint
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)  # population std (ddof=0), as MMSA reports it


# ----------------------------------------------------------------------------- helpers


def msa_arch(cfg: Config) -> Arch:
    """The arch of `model.arch`; ConfigError when unknown or not an MSA model."""
    return get_arch(cfg.model.arch, task=MSATask.name)


def needs_stage1(cfg: Config) -> bool:
    """Stage 1 runs when the AV encoder starts pre-trained (Table 8) and no checkpoint is given."""
    av = cfg.model.av_encoder
    return msa_arch(cfg).av_pretraining and av.init in ("pretrain_tune", "pretrain_freeze") and not av.checkpoint


def load_data(cfg: Config, *, require_labels: bool = True) -> MMSAData:
    """The MMSA file of `cfg.data.path`, checked against `cfg.data.dataset` (unless it is "infer")."""
    if not cfg.data.path:
        raise ConfigError("data.path is not set: pass --data PATH or --set data.path=...")
    data = load_mmsa(cfg.data.path, dataset=cfg.data.dataset, require_labels=require_labels)
    for note in getattr(data, "notes", []):
        say(f"data: {note}")
    for split in ("train", "valid", "test"):
        data[split]  # a missing split raises DataError naming the file
    return data


def _train_loader(cfg: Config, split: Split, tokenizer: Any, seed: int, *, text_dropout: float = 0.0,
                  rationales: bool = True, length_grouped: int = 0):
    bs = cfg.data.batch_size
    shard, num_shards = process_info()  # several DDP processes: each trains on its share of the batches
    # The task head's BatchNorm cannot train on a one-sample batch: drop such a trailing batch.
    loader = make_loader(split, tokenizer, max_text_len=cfg.data.max_text_len, batch_size=bs, shuffle=True,
                         seed=seed, num_workers=cfg.data.num_workers, drop_last=len(split) % bs == 1,
                         shard=shard, num_shards=num_shards, text_dropout=text_dropout,
                         length_grouped=length_grouped)
    return _with_rationales(cfg, tokenizer, loader) if rationales else loader


def _eval_loader(cfg: Config, split: Split, tokenizer: Any, *, rationales: bool = True):
    loader = make_loader(split, tokenizer, max_text_len=cfg.data.max_text_len, batch_size=cfg.data.eval_batch_size,
                         shuffle=False, num_workers=cfg.data.num_workers)
    return _with_rationales(cfg, tokenizer, loader) if rationales else loader


def _with_rationales(cfg: Config, tokenizer: Any, loader: Any) -> Any:
    """model.rationale: batches carry the teacher rationales of model.rationale.path (stage 2 only)."""
    r = cfg.model.rationale
    if not r.enabled:
        return loader
    from ..model.rationale import RationaleCollate
    from ..rationale.teachers import read_rationales

    loader.collate_fn = RationaleCollate(loader.collate_fn, tokenizer, read_rationales(r.path), r.max_len)
    return loader


def _stage1_tokenizer():
    # Stage 1 never reads the text, but batches carry it: the in-code byte tokenizer spares a backbone load.
    from ..backbones.tiny import byte_tokenizer

    return byte_tokenizer()


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(a: dict[str, Any], b: dict[str, Any], *, ignore: Iterable[str] = _NOT_COMPARED) -> list[str]:
    """Flattened keys whose values differ between two config trees (ignoring run-local settings).

    data.dataset "infer" matches any dataset: the file decides it, and a run compares the resolved
    value again before it trains (train_run).
    """
    fa, fb = _flat(a), _flat(b)
    skip = set(ignore)
    if DATASET_INFER in (fa.get("data.dataset"), fb.get("data.dataset")):
        skip.add("data.dataset")
    return sorted(k for k in set(fa) | set(fb) if k not in skip and fa.get(k) != fb.get(k))


def _stage1_subtree(tree: dict[str, Any]) -> dict[str, Any]:
    """What decides a stage-1 result: the data, the AV encoder architecture and the pre-training recipe."""
    av = {k: v for k, v in tree["model"]["av_encoder"].items() if k not in ("init", "checkpoint")}
    data = {k: tree["data"][k] for k in ("dataset", "batch_size")}
    smoke = {k: tree["train"][k] for k in ("max_steps", "limit_batches", "mixed_precision")}
    return {"data": data, "av_encoder": av, "pretrain": tree["pretrain"], "train": smoke}


def _seed_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / f"seed-{seed}"


def _stage1_place(cfg: Config, run_dir: Path, seed: int) -> tuple[Path, int]:
    """(directory, seed) of the stage 1 that `seed` starts from: its own, or with `pretrain.shared`
    the one RUN_DIR/stage1 trained with the first seed (the authors pre-train the AV encoder once)."""
    if cfg.pretrain.shared:
        return run_dir / STAGE1_DIR, cfg.train.seeds[0]
    return _seed_dir(run_dir, seed) / STAGE1_DIR, seed


def _print_counts(what: str, counts: dict) -> None:
    t, n = counts["trainable"], counts["total"]
    say(f"{what}: {t:,} trainable / {n:,} total parameters ({100 * t / max(1, n):.2f}% trainable)")


def _check_run_dir(cfg: Config, run_dir: Path) -> None:
    """A run dir holds one configuration: refuse to mix results of another one into it."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return
    has_stage2 = any((p / DONE).exists() or (p / LAST).exists() for p in run_dir.glob("seed-*"))
    if not has_stage2:
        return  # only stage-1 work so far: checked per seed against stage1/best.pt
    stored = load_yaml(path.read_text()) or {}
    try:  # keys added to the config since that run was written take their defaults
        stored = config_from_dict(stored, str(path)).to_dict()
    except ConfigError:
        pass  # no longer a valid config: compare as stored, the differences name the keys
    diff = config_differences(stored, cfg.to_dict())
    if diff:
        shown = ", ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
        raise ConfigError(
            f"{run_dir} already holds a run with a different configuration ({shown}); "
            "choose another --out, or pass the same settings to continue it"
        )


def unfinished_work(cfg: Config, run_dir: Path) -> list[str]:
    """What `cfg`'s seeds left unfinished in `run_dir` (a finished stage 1 is reusable, not unfinished)."""
    from .loop import HISTORY

    found: list[str] = []
    for seed in cfg.train.seeds:
        sd = _seed_dir(run_dir, seed)
        if (sd / DONE).exists():
            continue
        if (sd / LAST).exists() or (sd / HISTORY).exists():
            n = len(read_jsonl(sd / HISTORY)) if (sd / HISTORY).exists() else 0
            found.append(f"seed {seed}: stage 2, {n} epoch(s) logged")
            continue
        if needs_stage1(cfg):
            stage1_dir, _ = _stage1_place(cfg, run_dir, seed)
            if ((stage1_dir / LAST).exists() or (stage1_dir / HISTORY).exists()) and not _stage1_finished(stage1_dir):
                n = len(read_jsonl(stage1_dir / HISTORY)) if (stage1_dir / HISTORY).exists() else 0
                found.append(f"seed {seed}: stage 1 in {stage1_dir}, {n} epoch(s) logged")
    return sorted(set(found), key=found.index)


_RUN_FILES = (CONFIG_FILE, TASK_FILE, RESULTS_CSV, RESULTS_JSON, "env.json")


def remove_previous_run(run_dir: Path, dirs: Iterable[Path], files: Iterable[str]) -> list[str]:
    """--overwrite: remove what a previous run wrote (the given folders and run files); other files stay."""
    removed = []
    for p in dirs:
        if p.is_dir():
            shutil.rmtree(p)
            removed.append(p.name)
    for name in files:
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            removed.append(name)
    return removed


def guard_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, start_over: Callable[[], list[str]],
                  unfinished: Callable[[], list[str]], check_config: Callable[[], None]) -> None:
    """The run-dir rules of every `train` command, under the run lock and before anything is written:
    orphaned temporary files go; --overwrite calls `start_over`; otherwise unfinished work is refused
    unless resumed, and `check_config` refuses a run written with another configuration."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue the run, or start it over")
    orphans = remove_orphaned_temps(run_dir)
    if orphans:
        say(f"{run_dir}: removed {len(orphans)} temporary file(s) an interrupted write left behind")
    if overwrite:
        removed = start_over()
        if removed:
            say(f"{run_dir}: --overwrite: removed the previous run ({', '.join(removed)})")
        return
    if not resume:
        left = unfinished()
        if left:
            raise RunDirError(
                f"{run_dir} holds unfinished work ({'; '.join(left)}): pass --resume to continue or "
                "--overwrite to start over"
            )
    check_config()


def prepare_run_dir(cfg: Config, run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """`guard_run_dir` for DeepMLF runs: seeds, stage 1 and tracking are the previous run's work."""
    previous = [*seed_dirs(run_dir).values(), run_dir / STAGE1_DIR, run_dir / TRACKING_DIR]
    guard_run_dir(run_dir, resume=resume, overwrite=overwrite,
                  start_over=lambda: remove_previous_run(run_dir, previous, _RUN_FILES),
                  unfinished=lambda: unfinished_work(cfg, run_dir), check_config=lambda: _check_run_dir(cfg, run_dir))


def locked_run_dir(run_dir: Path) -> contextlib.AbstractContextManager:
    """The run-dir lock, held by the main process (DDP workers write nothing the lock guards)."""
    return run_lock(run_dir, say=say) if is_main_process() else contextlib.nullcontext()


def _write_config(cfg: Config, run_dir: Path) -> None:
    write_text(run_dir / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    write_json(run_dir / TASK_FILE, MSATask.of_config(cfg).spec())


def _write_env(cfg: Config, run_dir: Path, data: MMSAData) -> None:
    """env.json: packages, torch/CUDA, device, git commit, data SHA-256, command line (deepmlf.envinfo)."""
    import torch

    from ..envinfo import environment_record, write_env_record

    device = "cuda" if torch.cuda.is_available() and not _forced_cpu() else "cpu"
    record = environment_record(data_path=cfg.data.path, feature_set=getattr(data, "feature_set", None),
                                device=f"{device} x{process_info()[1]}")
    write_env_record(run_dir, record)


def _forced_cpu() -> bool:
    from .distributed import use_cpu

    return bool(use_cpu())


def _feature_set_meta(data: MMSAData) -> dict[str, Any]:
    """Checkpoint key `feature_set`: what extracted the training features (absent for MMSA's own files)."""
    fs = getattr(data, "feature_set", None)
    return {"feature_set": fs} if fs else {}


class _Tracking:
    """accelerate trackers for one seed (train.log_with): each epoch's history record, flattened."""

    def __init__(self, accelerator: Accelerator, cfg: Config, seed: int) -> None:
        self.accelerator = accelerator
        self.on = bool(cfg.train.log_with)
        if self.on:
            hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in _flat(cfg.to_dict()).items()}
            accelerator.init_trackers(f"seed-{seed}", config=hparams)

    def callback(self, stage: str) -> EpochCallback:
        def log(record: dict[str, Any]) -> None:
            if self.on:
                values = {f"{stage}/{k.replace('.', '/')}": v for k, v in _flat(record).items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step")}
                self.accelerator.log(values, step=int(record["epoch"]))
        return log

    def end(self) -> None:
        if self.on:
            self.accelerator.end_training()


# ----------------------------------------------------------------------------- stage 1


def _stage1_finished(stage_dir: Path) -> bool:
    if not (stage_dir / BEST).exists() or not (stage_dir / LAST).exists():
        return False
    return load_last(stage_dir / LAST).get("stop_reason") is not None


def run_stage1(cfg: Config, data: MMSAData, seed: int, stage_dir: Path, *, accelerator: Accelerator,
               resume: bool, progress: bool, callbacks: Iterable[EpochCallback] = ()) -> Path:
    """Pre-train the AV encoder (AV regressor, L1) for one seed; returns the path of its best.pt."""
    from ..model import build_av_regressor

    best = stage_dir / BEST
    if _stage1_finished(stage_dir):
        stored = load_best(best)["config"]
        diff = config_differences(_stage1_subtree(stored), _stage1_subtree(cfg.to_dict()), ignore=())
        if diff:
            raise ConfigError(
                f"{best} was pre-trained with other settings ({', '.join(diff[:6])}); "
                "choose another --out or remove that stage1 folder"
            )
        say(f"seed {seed}: reusing the pre-trained AV encoder {best}")
        return best

    train, valid = data["train"], data["valid"]
    set_seed(seed)
    model = build_av_regressor(cfg, train.audio_dim, train.vision_dim)
    _print_counts(f"seed {seed} stage 1 (AV regressor)", model.parameter_counts())
    p = cfg.pretrain
    tok = _stage1_tokenizer()
    stage = Stage(
        name="stage1",
        model=model,
        optimizer=build_pretrain_optimizer(model, p),
        task=MSATask.of_config(cfg),
        key_metric=STAGE1_KEY_METRIC,
        key_metric_option="stage-1 key metric",
        max_epochs=p.max_epochs,
        early_stop=p.early_stop,
        grad_accum=p.grad_accum,
        clip_grad=p.clip_grad,
        clip_mode="value",  # the authors' BI_ENC clips every gradient by value
        max_steps=cfg.train.max_steps,
        limit_batches=cfg.train.limit_batches,
        checkpoint_meta={"config": cfg.to_dict(), "audio_dim": train.audio_dim, "vision_dim": train.vision_dim},
        best_extras=lambda: {"stage": "stage1", "av_encoder": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()},
                             **_feature_set_meta(data)},
    )
    stage.plateau = build_plateau(stage.optimizer, p)
    fit(stage, _train_loader(cfg, train, tok, seed, rationales=False), _eval_loader(cfg, valid, tok, rationales=False),
        stage_dir,
        accelerator=accelerator, resume=resume, progress=progress, callbacks=callbacks)
    if not best.exists():  # every validation was NaN
        raise CheckpointError(f"stage 1 of seed {seed} produced no best checkpoint ({stage_dir}/history.jsonl)")
    return best


# ----------------------------------------------------------------------------- stage 2


def _stage2_config(cfg: Config, stage1_ckpt: Path | None) -> Config:
    if stage1_ckpt is None:
        return cfg
    tree = cfg.to_dict()
    tree["model"]["av_encoder"]["checkpoint"] = str(stage1_ckpt)
    return config_from_dict(tree, "stage-2 config")


def _build_stage2_model(cfg: Config, audio_dim: int, vision_dim: int) -> tuple[Any, Any, Arch]:
    """(model of `model.arch`, the tokenizer its batches use, the arch). A fresh backbone per call:
    DeepMLF wraps its layers in place."""
    arch = msa_arch(cfg)
    backbone = None
    if arch.needs_backbone:
        from ..backbones import load_backbone

        backbone = load_backbone(cfg.model.backbone, dtype=cfg.model.dtype)
    model = build_arch(arch.name, cfg, dims={"audio": audio_dim, "vision": vision_dim}, backbone=backbone)
    # Models without an LM still get batches with text: the in-code byte tokenizer spares a load.
    tokenizer = backbone.tokenizer if backbone is not None else _stage1_tokenizer()
    return model, tokenizer, arch


def run_stage2(cfg: Config, data: MMSAData, seed: int, seed_dir: Path, *, accelerator: Accelerator, resume: bool,
               progress: bool, callbacks: Iterable[EpochCallback] = ()) -> tuple[Any, Any, FitResult]:
    """Train the model of `model.arch` for one seed; returns (model with best.pt loaded, its tokenizer, fit result)."""
    train, valid = data["train"], data["valid"]
    set_seed(seed)
    model, tokenizer, arch = _build_stage2_model(cfg, train.audio_dim, train.vision_dim)
    on = f" on {cfg.model.backbone}" if arch.needs_backbone else ""
    _print_counts(f"seed {seed} {arch.label}{on}", model.parameter_counts())
    t = cfg.train
    # Stage 1 never reads text: data.text_dropout applies to stage 2 only.
    # data.length_grouped: stage 2 only (stage 1 reads no text).
    train_loader = _train_loader(cfg, train, tokenizer, seed, text_dropout=cfg.data.text_dropout,
                                 length_grouped=cfg.data.length_grouped)
    optimizer = build_optimizer(model, t, av_module=getattr(model, "av_encoder", None), fused=cfg.perf.fused_adamw)
    spe = steps_per_epoch(len(train_loader), t.grad_accum, t.limit_batches)
    stage = Stage(
        name="stage2",
        model=model,
        optimizer=optimizer,
        task=MSATask.of_config(cfg),
        key_metric=t.key_metric,
        # The authors' recipe stops by early stopping alone: max_epochs then only shapes the schedule.
        max_epochs=t.max_epochs if t.stop_at_max_epochs else None,
        early_stop=t.early_stop,
        grad_accum=t.grad_accum,
        scheduler=build_scheduler(optimizer, t, steps_per_epoch=spe),
        # The authors clip the MM blocks, fusion tokens and heads, and leave the AV encoder alone.
        clip_params=grad_clip_parameters(optimizer, exclude_groups=_AV_GROUPS),
        clip_grad=t.clip_grad,
        clip_mode=t.clip_mode,
        max_steps=t.max_steps,
        limit_batches=t.limit_batches,
        checkpoint_meta={"config": cfg.to_dict(), "audio_dim": train.audio_dim, "vision_dim": train.vision_dim},
        best_extras=lambda: {"stage": "stage2", **_feature_set_meta(data)},
    )
    result = fit(stage, train_loader, _eval_loader(cfg, valid, tokenizer), seed_dir,
                 accelerator=accelerator, resume=resume, progress=progress, callbacks=callbacks)
    best = seed_dir / BEST
    if not best.exists():
        raise CheckpointError(f"seed {seed} produced no best checkpoint (see {seed_dir}/history.jsonl)")
    model.load_trainable_state_dict(load_best(best)["model"])
    return model, tokenizer, result


def _test_outputs(model: Any, cfg: Config, data: MMSAData, tokenizer: Any, accelerator: Accelerator) -> Predictions:
    return collect_predictions(model, _eval_loader(cfg, data["test"], tokenizer), task=MSATask.of_config(cfg),
                               device=accelerator.device, autocast=accelerator.autocast,
                               limit_batches=cfg.train.limit_batches)


def write_seed_outputs(seed_dir: Path, task: Task, preds: Predictions, model: Any, result: FitResult,
                       t0: float) -> dict[str, float]:
    """A finished seed's files: test_metrics.json, predictions_test.csv, gates.json (models with
    gates), DONE last. Returns the test metrics. Main process only."""
    metrics = task.metrics(preds)
    write_json(seed_dir / "test_metrics.json", metrics)
    write_text(seed_dir / "predictions_test.csv", task.predictions_frame(preds).to_csv(index=False))
    if hasattr(model, "gate_values"):
        write_json(seed_dir / "gates.json", model.gate_values())
    write_json(seed_dir / DONE, {
        "best_epoch": result.best_epoch, "epochs": result.epochs, "global_step": result.global_step,
        "stop_reason": result.stop_reason, "time_s": round(time.perf_counter() - t0, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "processes": process_info()[1],
    })
    return metrics


def train_seed(cfg: Config, data: MMSAData, seed: int, run_dir: Path, *, resume: bool = False, progress: bool = True,
               callbacks: Iterable[EpochCallback] = ()) -> dict[str, float]:
    """Both stages for one seed, then test; returns the test metrics (MMSA names). Skips a DONE seed."""
    seed_dir = _seed_dir(run_dir, seed)
    if (seed_dir / DONE).exists():
        say(f"seed {seed}: already done ({seed_dir / DONE}), skipped")
        return json.loads((seed_dir / "test_metrics.json").read_text())
    seed_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    accelerator = make_accelerator(cfg.train.mixed_precision, cfg.train.grad_accum, log_with=cfg.train.log_with,
                                   project_dir=run_dir / TRACKING_DIR)
    tracking = _Tracking(accelerator, cfg, seed)
    try:
        stage1_ckpt = None
        if needs_stage1(cfg):
            stage1_dir, stage1_seed = _stage1_place(cfg, run_dir, seed)
            stage1_ckpt = run_stage1(cfg, data, stage1_seed, stage1_dir, accelerator=accelerator, resume=resume,
                                     progress=progress, callbacks=[tracking.callback("stage1")])
        cfg2 = _stage2_config(cfg, stage1_ckpt)
        model, tokenizer, result = run_stage2(cfg2, data, seed, seed_dir, accelerator=accelerator, resume=resume,
                                              progress=progress, callbacks=[*callbacks, tracking.callback("stage2")])
    finally:
        tracking.end()

    preds = _test_outputs(model, cfg, data, tokenizer, accelerator)
    task = MSATask.of_config(cfg)
    if is_main_process():
        metrics = write_seed_outputs(seed_dir, task, preds, model, result, t0)
    else:
        metrics = task.metrics(preds)
    wait_for_everyone()
    say(f"seed {seed} test: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return metrics


# ----------------------------------------------------------------------------- results


def aggregate(run_dir: Path, task: Task) -> RunResult:
    """Test metrics of every finished seed in `run_dir`, with mean and population std."""
    names = list(task.metric_names)
    per_seed = seed_test_metrics(run_dir)  # seeds with DONE, in seed order
    result = RunResult(run_dir=run_dir, task=task, metric_names=names, per_seed=per_seed)
    if per_seed:
        table = np.array([[m[k] for k in names] for m in per_seed.values()], dtype=float)  # (n_seeds, n_metrics)
        result.mean = dict(zip(names, table.mean(0).tolist()))
        result.std = dict(zip(names, table.std(0).tolist()))  # ddof=0, as MMSA's results CSV
    return result


def write_results(result: RunResult) -> None:
    """results.csv (first column `seed`: each seed, then `mean`, `std`) and results.json."""
    rows = [{"seed": str(s), **m} for s, m in result.per_seed.items()]
    if result.per_seed:
        rows += [{"seed": "mean", **result.mean}, {"seed": "std", **result.std}]
    df = pd.DataFrame(rows, columns=["seed", *result.metric_names])
    write_text(result.run_dir / RESULTS_CSV, df.to_csv(index=False))
    write_json(result.run_dir / RESULTS_JSON, {
        "dataset": result.task.spec().get("dataset"),
        "metrics": result.metric_names,
        "n_seeds": len(result.per_seed),
        "per_seed": {str(s): m for s, m in result.per_seed.items()},
        "mean": result.mean,
        "std": result.std,
        "std_ddof": 0,
    })


def results_table(result: RunResult) -> Table:
    """The task's table metrics, accuracies/F1 in % (MSA: MAE/Corr raw, as papers print them); mean ± std last."""
    task = result.task
    table = Table(title=f"{result.run_dir} ({task.title}, {len(result.per_seed)} seed(s))")
    table.add_column("seed")
    names = [k for k in task.table_metrics if k in result.metric_names]
    for k in names:
        table.add_column(k, justify="right")
    fmt = task.format_value
    for s, m in result.per_seed.items():
        table.add_row(str(s), *(fmt(k, m[k]) for k in names))
    if len(result.per_seed) > 1:
        table.add_row("mean ± std", *(f"{fmt(k, result.mean[k])} ± {fmt(k, result.std[k])}" for k in names),
                      style="bold")
    return table


# ----------------------------------------------------------------------------- entry points


def train_run(cfg: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
              progress: bool = True, callbacks: Iterable[EpochCallback] = ()) -> RunResult:
    """Train every seed of `cfg.train.seeds` into `run_dir` (both stages), then aggregate.

    Every check that can refuse the run (backbone, dataset, key metric, run dir) comes first.
    Unfinished work in `run_dir` needs `resume` (continue) or `overwrite` (start over).
    """
    run_dir = Path(run_dir)
    check_output_dir(run_dir, "run directory (--out)")
    check_backbone(cfg)  # an unknown model.arch or backbone fails before a possibly multi-GB pickle is read
    data = load_data(cfg)
    cfg = resolve_dataset(cfg, data)
    check_selection(cfg)
    with locked_run_dir(run_dir):
        prepare_run_dir(cfg, run_dir, resume=resume, overwrite=overwrite)
        return _train_locked(cfg, data, run_dir, resume=resume, progress=progress, callbacks=callbacks)


def _train_locked(cfg: Config, data: MMSAData, run_dir: Path, *, resume: bool, progress: bool,
                  callbacks: Iterable[EpochCallback]) -> RunResult:
    task = MSATask.of_config(cfg)
    main = is_main_process()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(cfg, run_dir)
        _write_env(cfg, run_dir, data)
    wait_for_everyone()
    callbacks = list(callbacks)
    for seed in cfg.train.seeds:  # at least one (TrainConfig.seeds)
        train_seed(cfg, data, seed, run_dir, resume=resume, progress=progress, callbacks=callbacks)
        result = aggregate(run_dir, task)
        if main:
            write_results(result)  # after every seed: partial results survive an interrupted run
    if main and progress:
        console.print(results_table(result))
    return result


def pretrain_av(cfg: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                progress: bool = True) -> dict[int, Path]:
    """Stage 1 alone for every seed: `run_dir/seed-S/stage1/best.pt` (with `pretrain.shared` one
    `run_dir/stage1/best.pt` for all), reused by a later `train_run`. Returns seed -> best.pt."""
    run_dir = Path(run_dir)
    check_output_dir(run_dir, "run directory (--out)")
    data = load_data(cfg)
    cfg = resolve_dataset(cfg, data)
    with locked_run_dir(run_dir):
        prepare_run_dir(cfg, run_dir, resume=resume, overwrite=overwrite)
        return _pretrain_locked(cfg, data, run_dir, resume=resume, progress=progress)


def _pretrain_locked(cfg: Config, data: MMSAData, run_dir: Path, *, resume: bool, progress: bool) -> dict[int, Path]:
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(cfg, run_dir)
        _write_env(cfg, run_dir, data)
    wait_for_everyone()
    out = {}
    for seed in cfg.train.seeds:
        stage1_dir, stage1_seed = _stage1_place(cfg, run_dir, seed)
        accelerator = make_accelerator(cfg.train.mixed_precision, cfg.pretrain.grad_accum)
        out[seed] = run_stage1(cfg, data, stage1_seed, stage1_dir, accelerator=accelerator,
                               resume=resume, progress=progress)
    return out


# ----------------------------------------------------------------------------- evaluate / predict


@dataclass
class LoadedCheckpoint:
    model: Any
    cfg: Config
    tokenizer: Any
    stage: str  # "stage1" (AV regressor) or "stage2" (the model of model.arch)
    checkpoint: dict[str, Any]
    path: Path | None = None  # where it was read from

    @property
    def feature_set(self) -> dict[str, Any] | None:
        """The feature set the training features came from (None: MMSA's or other unrecorded features)."""
        return self.checkpoint.get("feature_set")


def load_model_from_checkpoint(ckpt_path: str | Path) -> LoadedCheckpoint:
    """Rebuild the model a best.pt was trained as (config + backbone name stored in it) and load its weights."""
    return model_from_checkpoint_dict(load_best(ckpt_path), ckpt_path)


def model_from_checkpoint_dict(ckpt: dict[str, Any], ckpt_path: str | Path) -> LoadedCheckpoint:
    """`load_model_from_checkpoint` for a best.pt-layout dict already in memory (also an exported model's)."""
    cfg = config_from_dict(ckpt["config"], f"config stored in {ckpt_path}")
    stage = ckpt.get("stage", "stage1" if "av_encoder" in ckpt else "stage2")
    if stage == "stage1":
        from ..model import build_av_regressor

        model = build_av_regressor(cfg, ckpt["audio_dim"], ckpt["vision_dim"])
        tokenizer = _stage1_tokenizer()
    else:
        # The weights come from the checkpoint itself (it holds the AV encoder too), so the stage-1
        # file it was initialised from need not exist any more.
        tree = cfg.to_dict()
        tree["model"]["av_encoder"]["checkpoint"] = None
        tree["model"]["rationale"]["teacher_checkpoint"] = None  # the assistant only mattered for training
        cfg = config_from_dict(tree, f"config stored in {ckpt_path}")
        model, tokenizer, _ = _build_stage2_model(cfg, ckpt["audio_dim"], ckpt["vision_dim"])
    try:
        model.load_trainable_state_dict(ckpt["model"])
    except CheckpointError as e:
        raise CheckpointError(f"{ckpt_path}: {e}") from None
    model.eval()
    return LoadedCheckpoint(model=model, cfg=cfg, tokenizer=tokenizer, stage=stage, checkpoint=ckpt, path=Path(ckpt_path))


def _checkpoint_split(loaded: LoadedCheckpoint, data_path: str | Path, split: str, *, require_labels: bool) -> Split:
    from ..features.registry import check_same_feature_set

    cfg = loaded.cfg
    # The dataset the model was trained on: a file that contradicts it is refused by load_mmsa.
    data = load_mmsa(data_path, dataset=cfg.data.dataset, require_labels=require_labels)
    check_same_feature_set(loaded.checkpoint.get("feature_set"), data.feature_set, expected_what=f"checkpoint {loaded.path}",
                           got_what=str(data_path))
    s = data[split]
    want = (loaded.checkpoint["audio_dim"], loaded.checkpoint["vision_dim"])
    if (s.audio_dim, s.vision_dim) != want:
        raise DataError(
            f"{data_path} [{split}]: audio/vision feature dims are {s.audio_dim}/{s.vision_dim}, "
            f"but the checkpoint was trained on {want[0]}/{want[1]}"
        )
    return s


def _predict_split(loaded: LoadedCheckpoint, split: Split) -> Predictions:
    accelerator = make_accelerator(loaded.cfg.train.mixed_precision, 1)
    loader = _eval_loader(loaded.cfg, split, loaded.tokenizer, rationales=False)
    return collect_predictions(loaded.model, loader, task=MSATask.of_config(loaded.cfg), device=accelerator.device,
                               autocast=accelerator.autocast)


def _maybe_missing(split: Split, missing: Any) -> Split:
    """`split` with `missing` (a deepmlf.data.missing.MissingSpec, or None) applied."""
    if missing is None:
        return split
    from ..data.missing import apply_missing

    return apply_missing(split, missing.modalities, rate=missing.rate, seed=missing.seed)


def evaluate_checkpoint(ckpt_path: str | Path, data_path: str | Path, split: str = "test", *,
                        missing: Any = None) -> dict[str, float]:
    """The task's metrics (MMSA's) plus "Loss" (MSA: the mean L1) of a best.pt on one split of an MMSA pickle.

    `missing`: a `deepmlf.data.missing.MissingSpec`; those modalities are dropped first (any model).
    """
    loaded = load_model_from_checkpoint(ckpt_path)
    s = _maybe_missing(_checkpoint_split(loaded, data_path, split, require_labels=True), missing)
    preds = _predict_split(loaded, s)
    return MSATask.of_config(loaded.cfg).score(preds, with_loss_terms=False)


def predict(ckpt_path: str | Path, data_path: str | Path, split: str = "test",
            out_csv: str | Path | None = None, *, missing: Any = None) -> pd.DataFrame:
    """One row per sample: id, label (empty when the file has none), y_o, y_t, y_av, y_f (fusion-head mean);
    `missing` as in `evaluate_checkpoint`."""
    loaded = load_model_from_checkpoint(ckpt_path)
    s = _maybe_missing(_checkpoint_split(loaded, data_path, split, require_labels=False), missing)
    preds = _predict_split(loaded, s)
    frame = preds.to_frame(MSATask.of_config(loaded.cfg))
    from ..rationale.explain import explain_batches, has_rationale_head

    if has_rationale_head(loaded.model):  # model.rationale: one more column, the generated rationale
        rows = explain_batches(loaded.model, _eval_loader(loaded.cfg, s, loaded.tokenizer, rationales=False))
        frame["rationale"] = [r["rationale"] for r in rows]
    if out_csv is not None:
        write_text(out_csv, frame.to_csv(index=False))
    return frame
