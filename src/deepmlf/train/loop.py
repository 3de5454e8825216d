"""The one training loop (STYLE.md habit 5), for every model and task. Stages are data: a `Stage`
names the model, its task, its optimiser and schedules, which gradients are clipped and how
selection works; `fit` reads nothing else (never a dataset name: the task says which metrics
validation reports and which way is better).

Per epoch: train over the loader (gradient accumulation, clipping, per-step lr schedule), validate
(the task's metrics, its "Loss" — MSA: mean L1 of the prediction — and the mean loss terms), log one history line, keep
`best.pt` when the key metric improves, write `last.pt`, stop early after `early_stop` epochs
without improvement. `resume=True` continues from `last.pt` exactly: same weights, optimiser and
schedule position, early-stopping counters and RNG states (the next epoch draws the same shuffle
and dropout masks the uninterrupted run would have).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..errors import DataError
from ..io import append_jsonl, read_jsonl, write_text
from ..tasks import Task
from .checkpoint import BEST, LAST, load_last, save_best, save_last, set_rng_state
from .distributed import from_main, is_main_process, mean_over_processes, say, sync_buffers, use_cpu, wait_for_everyone
from .early_stopping import EarlyStopping
from .evaluate import collect_predictions
from .optim import current_lr, group_lrs, load_optimizer_state

HISTORY = "history.jsonl"
EpochCallback = Callable[[dict[str, Any]], None]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf (learning rate too high, or bad input features)."""


@dataclass
class Stage:
    """One training stage as data."""

    name: str  # "stage1" (AV pre-training) or "stage2" (the model); also checked on resume
    model: nn.Module  # outputs .loss/.loss_terms/.prediction; has trainable_state_dict()/load_trainable_state_dict()
    optimizer: Optimizer
    task: Task  # which metrics validation reports, their directions, the valid "Loss"
    key_metric: str  # model selection: one of task.key_metric_names or "Loss"
    max_epochs: int | None  # None: no epoch cap, early stopping (or max_steps) ends the stage (authors)
    early_stop: int  # epochs without improvement before stopping
    grad_accum: int = 1  # mini-batches per optimiser step
    scheduler: Any | None = None  # stepped after every optimiser step (warm-up + cosine)
    plateau: Any | None = None  # ReduceLROnPlateau, stepped after every validation on "Loss"
    clip_params: list[nn.Parameter] | None = None  # whose gradients are clipped; None = every trainable one
    clip_grad: float | None = None  # threshold; None disables clipping
    clip_mode: Literal["value", "norm"] = "value"
    max_steps: int | None = None  # optimiser-step cap (smoke runs)
    limit_batches: int | None = None  # mini-batch cap per epoch and split (smoke runs)
    # Whose key is named in a bad key_metric error (the config option that set it).
    key_metric_option: str = "train.key_metric"
    # What best.pt holds besides the weights: {"config", "audio_dim", "vision_dim"} ...
    checkpoint_meta: dict[str, Any] = field(default_factory=dict)
    # ... and stage extras computed at save time (stage 1: {"av_encoder": encoder state dict}).
    best_extras: Callable[[], dict[str, Any]] | None = None


@dataclass
class FitResult:
    best_value: float | None  # key metric of the best validation epoch
    best_epoch: int | None
    epochs: int  # epochs completed
    global_step: int  # optimiser steps taken
    stop_reason: str  # "early_stop", "max_epochs" or "max_steps"
    history: list[dict[str, Any]]


def resolve_mixed_precision(mode: str) -> str:
    """"auto" -> "bf16" on a CUDA GPU that supports it, else "no"."""
    if mode != "auto":
        return mode
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def make_accelerator(mixed_precision: str, grad_accum: int, *, log_with: list[str] | None = None,
                     project_dir: str | Path | None = None) -> Accelerator:
    mp = resolve_mixed_precision(mixed_precision)
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision") not in (None, mp):
        # accelerate keeps one process-wide state; a run with another precision (e.g. a sweep in
        # one process) needs it reset rather than an error.
        AcceleratorState._reset_state()
    # DDP (several processes) needs no find_unused_parameters: every trainable parameter of both
    # stages is in each step's graph (a λ=0 term still is; frozen parts do not require grad).
    if not log_with:
        return Accelerator(mixed_precision=mp, gradient_accumulation_steps=grad_accum, cpu=use_cpu())
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=grad_accum, cpu=use_cpu(),
                       log_with=list(log_with), project_dir=str(project_dir) if project_dir is not None else None)


def _n_batches(loader: Iterable, limit: int | None) -> int:
    n = len(loader)  # type: ignore[arg-type]
    return min(n, limit) if limit is not None else n


def _clip(accelerator: Accelerator, stage: Stage) -> None:
    if stage.clip_grad is None:
        return
    params = stage.clip_params
    if params is None:
        params = [p for g in stage.optimizer.param_groups for p in g["params"]]
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    if stage.clip_mode == "norm":
        accelerator.clip_grad_norm_(params, stage.clip_grad)
    else:
        accelerator.clip_grad_value_(params, stage.clip_grad)


def _grad_sync(accelerator: Accelerator, model: nn.Module, step_ends: bool) -> contextlib.AbstractContextManager:
    """DDP averages gradients across processes only on the micro-batch that ends a step."""
    return contextlib.nullcontext() if step_ends else accelerator.no_sync(model)


def _train_epoch(stage: Stage, model: nn.Module, loader: DataLoader, accelerator: Accelerator, *, epoch: int,
                 global_step: int, progress: bool) -> tuple[dict[str, float], int, bool]:
    """One pass over the train loader with `model` (stage.model, DDP-wrapped when several processes
    train). Returns (mean train losses, global step, hit max_steps)."""
    opt, accum = stage.optimizer, stage.grad_accum
    n_batches = _n_batches(loader, stage.limit_batches)
    model.train()
    opt.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    n_seen = 0
    hit_max_steps = False
    bar = tqdm(total=n_batches, desc=f"{stage.name} epoch {epoch}/{stage.max_epochs or '∞'}",
               disable=not (progress and is_main_process()), leave=False, dynamic_ncols=True)
    try:
        for i, batch in enumerate(loader):
            if i >= n_batches:
                break
            batch = batch.to(accelerator.device)
            if batch.labels is None:
                raise DataError(f"the train split has no labels ({stage.task.label_key}); training needs them")
            step_ends = (i + 1) % accum == 0 or i + 1 == n_batches
            with _grad_sync(accelerator, model, step_ends), accelerator.autocast():
                out = model(batch)
            loss = out.loss
            if not torch.isfinite(loss.detach()):
                raise NonFiniteLossError(
                    f"{stage.name}: the training loss is {float(loss)} at epoch {epoch}, step {global_step}; "
                    "lower the learning rate or check the input features"
                )
            # The step uses the mean over its group's batches; the last group of an epoch may be
            # shorter. accelerate's backward divides by its own accumulation count: undo that.
            group_size = min(accum, n_batches - (i // accum) * accum)
            with _grad_sync(accelerator, model, step_ends):
                accelerator.backward(loss * (accelerator.gradient_accumulation_steps / group_size))

            b = len(batch)
            n_seen += b
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * b
            for name, value in out.loss_terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * b

            if step_ends:
                _clip(accelerator, stage)
                opt.step()
                if stage.scheduler is not None:
                    stage.scheduler.step()
                opt.zero_grad(set_to_none=True)
                global_step += 1
                if stage.max_steps is not None and global_step >= stage.max_steps:
                    hit_max_steps = True
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss'] / n_seen:.4f}", lr=f"{current_lr(opt):.2e}", refresh=False)
            if hit_max_steps:
                break
    finally:
        bar.close()
    return {k: v / max(1, n_seen) for k, v in sums.items()}, global_step, hit_max_steps


def fit(
    stage: Stage,
    train_loader: DataLoader,
    valid_loader: DataLoader,
    out_dir: str | Path,
    *,
    accelerator: Accelerator,
    resume: bool = False,
    progress: bool = True,
    callbacks: Iterable[EpochCallback] = (),
) -> FitResult:
    """Train `stage` until early stopping, `max_epochs` or `max_steps`; write history/best/last in `out_dir`.

    `callbacks` run after each epoch is on disk (history line, best.pt, last.pt) with the epoch's
    history record; an exception raised there stops training and propagates (Optuna pruning, tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    direction = stage.task.check_key_metric(stage.key_metric, stage.key_metric_option)
    model = stage.model.to(accelerator.device)
    # Several processes: DDP wraps the model for training; evaluation and checkpoints use `model`.
    train_model = accelerator.prepare_model(model) if accelerator.num_processes > 1 else model
    main = is_main_process()
    stopper = EarlyStopping(mode=direction, patience=stage.early_stop)  # type: ignore[arg-type]
    generator: torch.Generator | None = getattr(train_loader, "generator", None)
    history_path, last_path = out_dir / HISTORY, out_dir / LAST
    epoch = global_step = history_len = 0
    stop_reason: str | None = None

    if resume and last_path.exists():
        state = load_last(last_path, stage=stage.name)
        model.load_trainable_state_dict(state["model"])
        load_optimizer_state(stage.optimizer, state["optimizer"])
        if stage.scheduler is not None and state["scheduler"] is not None:
            stage.scheduler.load_state_dict(state["scheduler"])
        if stage.plateau is not None and state["plateau"] is not None:
            stage.plateau.load_state_dict(state["plateau"])
        stopper.load_state_dict(state["early_stopping"])
        epoch, global_step, history_len = state["epoch"], state["global_step"], state["history_len"]
        stop_reason = state["stop_reason"]
        # Lines written after last.pt (a crash between the two) belong to an epoch that is re-run.
        kept = read_jsonl(history_path)[:history_len] if history_path.exists() else []
        wait_for_everyone()  # every process has read the history before the main one trims it
        if main:
            write_text(history_path, "".join(_json_line(r) for r in kept))
        set_rng_state(state["rng"], generator)
        if stop_reason is None:
            say(f"{stage.name}: resuming after epoch {epoch} (optimiser step {global_step})")
    elif main:
        for stale in (history_path, last_path, out_dir / BEST):
            stale.unlink(missing_ok=True)

    while stop_reason is None:
        epoch += 1
        t0 = time.perf_counter()
        train_losses, global_step, hit_max_steps = _train_epoch(
            stage, train_model, train_loader, accelerator, epoch=epoch, global_step=global_step, progress=progress
        )
        train_losses = mean_over_processes(train_losses)
        sync_buffers(model)
        preds = collect_predictions(model, valid_loader, task=stage.task, device=accelerator.device,
                                    autocast=accelerator.autocast, limit_batches=stage.limit_batches)
        # Every process validated the same weights on the same split; the main one's numbers decide
        # (and are logged), so early stopping can never disagree across processes.
        metrics = from_main(stage.task.score(preds))
        if stage.plateau is not None:
            stage.plateau.step(metrics["Loss"])
        improved = stopper.step(metrics[stage.key_metric], epoch)
        record = {
            "epoch": epoch,
            "step": global_step,
            "lr": current_lr(stage.optimizer),
            "lrs": group_lrs(stage.optimizer),
            "time_s": round(time.perf_counter() - t0, 3),
            "train": train_losses,
            "valid": metrics,
            "improved": improved,
        }
        if main:
            append_jsonl(history_path, record)
        history_len += 1
        if improved and main:
            extras = stage.best_extras() if stage.best_extras is not None else None
            save_best(out_dir / BEST, model_state=model.trainable_state_dict(), epoch=epoch, metrics=metrics,
                      extras=extras, **_meta(stage))
        if stopper.should_stop:
            stop_reason = "early_stop"
        elif hit_max_steps:
            stop_reason = "max_steps"
        elif stage.max_epochs is not None and epoch >= stage.max_epochs:
            stop_reason = "max_epochs"
        if main:
            save_last(last_path, stage=stage.name, model_state=model.trainable_state_dict(), optimizer=stage.optimizer,
                      scheduler=stage.scheduler, plateau=stage.plateau, early_stopping=stopper.state_dict(),
                      epoch=epoch, global_step=global_step, history_len=history_len, stop_reason=stop_reason,
                      generator=generator)
        wait_for_everyone()  # best.pt / last.pt are on disk before any process reads them
        key = stage.key_metric
        say(
            f"{stage.name} epoch {epoch:>3}: train loss {train_losses.get('loss', math.nan):.4f}  "
            f"valid {key} {metrics[key]:.4f}  best {stopper.best:.4f} (epoch {stopper.best_epoch})"
            + ("  *" if improved else "")
        )
        for cb in callbacks:
            cb(record)

    return FitResult(
        best_value=stopper.best,
        best_epoch=stopper.best_epoch,
        epochs=epoch,
        global_step=global_step,
        stop_reason=stop_reason,
        history=read_jsonl(history_path) if history_path.exists() else [],
    )


def _meta(stage: Stage) -> dict[str, Any]:
    meta = stage.checkpoint_meta
    return {"config": meta.get("config", {}), "audio_dim": meta.get("audio_dim", 0),
            "vision_dim": meta.get("vision_dim", 0)}


def _json_line(record: dict[str, Any]) -> str:
    return json.dumps(record, default=str) + "\n"
