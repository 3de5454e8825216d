"""What the trainer writes to disk: `best.pt` (model selection) and `last.pt` (resume point).

Layout (docs/contracts.md, "Run directory"):
- best.pt: {"model": trainable weights, "config": resolved config tree, "audio_dim", "vision_dim",
  "epoch", "metrics"} plus stage extras (stage 1 adds "av_encoder", the encoder's state dict
  that `deepmlf.model.load_av_encoder_checkpoint` reads). Loadable with `weights_only=True`.
- last.pt: everything needed to continue exactly where an interrupted run stopped: trainable
  weights, optimizer, schedulers, epoch, global step, early-stopping state, RNG states
  (torch, CUDA, numpy, random, the train loader's shuffle generator) and the history length.
  Format 2 stores the numpy/random states as tensors and lists, so it loads with
  `weights_only=True` like every other file; format-1 files (numpy arrays inside) still load
  with `weights_only=True` and only numpy's array-rebuilding globals allowed.

Every checkpoint load is `torch.load(weights_only=True)`: a crafted `last.pt` or `best.pt` in a
run dir cannot run code (issue 9, item 5). Every file is written atomically (deepmlf.io), so a
crash never leaves a truncated checkpoint.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import torch_save

BEST = "best.pt"
LAST = "last.pt"
LAST_FORMAT = 2  # bump when the layout of last.pt changes
_READABLE_LAST_FORMATS = (1, 2)  # 1: numpy RNG state as an ndarray (read with numpy's array globals only)


def _numpy_array_globals() -> list[Any]:
    """What rebuilding a plain numpy array needs in a pickle: nothing that can call other code."""
    found: list[Any] = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            m = __import__(mod, fromlist=["_reconstruct"])
        except ImportError:
            continue
        found += [getattr(m, "_reconstruct"), getattr(m, "scalar")]
    found += [type(np.dtype(t)) for t in ("uint32", "int64", "float64", "float32")]  # numpy>=1.25 DType classes
    return found



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


def load_checkpoint(path: str | Path, *, what: str = "checkpoint", numpy_arrays: bool = False) -> dict[str, Any]:
    """torch.load(weights_only=True) with a clear error for a missing, corrupt, foreign or unsafe file.

    numpy_arrays: also admit numpy's array-rebuilding globals (format-1 last.pt files hold the
    numpy RNG state as an array); never any other global.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist")
    try:
        if numpy_arrays:
            with torch.serialization.safe_globals(_numpy_array_globals()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated, foreign or crafted file: name it instead of a pickle traceback
        text = str(e)
        if "Unsupported global" in text or "weights_only" in text.lower():
            m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
            who = f" ({m.group(1)})" if m else ""
            raise CheckpointError(
                f"refusing to load {what} {path}: it holds a Python object{who} beyond tensors and plain "
                "values, which deepmlf never writes; loading it could run code (a crafted or foreign file), "
                "so it was not loaded"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path}: {first}") from None
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
    """Every RNG state as tensors, lists and numbers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "random": {"version": int(version), "internal": [int(v) for v in internal], "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    npy, rnd = state["numpy"], state["random"]
    if isinstance(npy, dict):  # format 2
        npy = (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)
    if isinstance(rnd, dict):
        rnd = (rnd["version"], tuple(rnd["internal"]), rnd["gauss_next"])
    random.setstate(rnd)
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


def load_last(path: str | Path, *, stage: str | None = None) -> dict[str, Any]:
    """A last.pt of format 1 or 2 (for `stage`, when given), loaded with weights_only=True."""
    state = load_checkpoint(path, what="resume point", numpy_arrays=True)
    if state.get("format") not in _READABLE_LAST_FORMATS or (stage is not None and state.get("stage") != stage):
        raise CheckpointError(
            f"{path}: not a {stage} resume point of this deepmlf version "
            f"(format {state.get('format')!r}, stage {state.get('stage')!r})"
        )
    return state
