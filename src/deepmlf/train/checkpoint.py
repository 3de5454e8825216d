"""What the trainer writes to disk: `best.pt` (model selection) and `last.pt` (resume point).

Layout (docs/contracts.md, "Run directory"):
- best.pt: {"model": trainable weights, "config": resolved config tree, "audio_dim", "vision_dim",
  "epoch", "metrics"} plus stage extras (stage 1 adds "av_encoder", the encoder's state dict
  that `deepmlf.model.load_av_encoder_checkpoint` reads). Loadable with `weights_only=True`.
- last.pt: everything needed to continue exactly where an interrupted run stopped: trainable
  weights, optimizer, schedulers, epoch, global step, early-stopping state, RNG states
  (torch, CUDA, numpy, random, the train loader's shuffle generator) and the history length.

Every file is written atomically (deepmlf.io), so a crash never leaves a truncated checkpoint.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import torch_save

BEST = "best.pt"
LAST = "last.pt"
LAST_FORMAT = 1  # bump when the layout of last.pt changes


def save_best(path: str | Path, *, model_state: dict, config: dict, audio_dim: int, vision_dim: int,
              epoch: int, metrics: dict[str, float], extras: dict[str, Any] | None = None) -> None:
    payload = {
        "model": {k: v.detach().cpu() for k, v in model_state.items()},
        "config": config,
        "audio_dim": int(audio_dim),
        "vision_dim": int(vision_dim),
        "epoch": int(epoch),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    payload.update(extras or {})
    torch_save(payload, path)


def load_checkpoint(path: str | Path, *, what: str = "checkpoint", weights_only: bool = True) -> dict[str, Any]:
    """torch.load with a clear error for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # a truncated or foreign file: name it instead of a pickle traceback
        raise CheckpointError(f"cannot read {what} {path}: {e}") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{what} {path}: expected a dict, found {type(ckpt).__name__}")
    return ckpt


def load_best(path: str | Path) -> dict[str, Any]:
    """A best.pt written by `deepmlf train` / `pretrain-av`, checked for the keys a rebuild needs."""
    ckpt = load_checkpoint(path, what="checkpoint")
    missing = [k for k in ("model", "config", "audio_dim", "vision_dim") if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not a deepmlf best.pt (missing {', '.join(missing)}; found {', '.join(sorted(ckpt))})"
        )
    return ckpt


# ----------------------------------------------------------------------------- RNG


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


# ----------------------------------------------------------------------------- resume point


def save_last(path: str | Path, *, stage: str, model_state: dict, optimizer: torch.optim.Optimizer,
              scheduler: Any | None, plateau: Any | None, early_stopping: dict, epoch: int, global_step: int,
              history_len: int, stop_reason: str | None, generator: torch.Generator | None) -> None:
    torch_save(
        {
            "format": LAST_FORMAT,
            "stage": stage,
            "model": {k: v.detach().cpu() for k, v in model_state.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "plateau": plateau.state_dict() if plateau is not None else None,
            "early_stopping": early_stopping,
            "epoch": int(epoch),  # epochs completed
            "global_step": int(global_step),  # optimiser steps taken
            "history_len": int(history_len),  # lines of history.jsonl that belong to these epochs
            # None while training; "early_stop", "max_epochs" or "max_steps" once the stage has ended.
            "stop_reason": stop_reason,
            "rng": rng_state(generator),
        },
        path,
    )


def load_last(path: str | Path, *, stage: str) -> dict[str, Any]:
    # Our own resume file: it holds numpy/random RNG states, which weights_only refuses.
    state = load_checkpoint(path, what="resume point", weights_only=False)
    if state.get("format") != LAST_FORMAT or state.get("stage") != stage:
        raise CheckpointError(
            f"{path}: not a {stage} resume point of this deepmlf version "
            f"(format {state.get('format')!r}, stage {state.get('stage')!r})"
        )
    return state
