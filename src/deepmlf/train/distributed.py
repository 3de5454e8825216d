"""Several processes (DDP under `accelerate launch` / `torchrun`): who writes, who prints, which batches.

Every process runs the same code on its own share of the training batches; DDP averages the
gradients, so all processes hold the same weights. Validation and test run in full on every
process (no gather needed, identical decisions), and only the main process writes files or prints.
With one process every helper here is a no-op.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object, parse_flag_from_env
from tqdm.auto import tqdm


def use_cpu() -> bool:
    """Processes on CPU: asked for (`accelerate launch --cpu` sets ACCELERATE_USE_CPU), or several
    processes (torchrun) on a machine without CUDA, which accelerate would otherwise not join up."""
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return parse_flag_from_env("ACCELERATE_USE_CPU") or (several and not torch.cuda.is_available())


def _state() -> PartialState:
    return PartialState(cpu=use_cpu())


def process_info() -> tuple[int, int]:
    """(this process's index, number of processes)."""
    state = _state()
    return state.process_index, state.num_processes


def is_main_process() -> bool:
    return _state().is_main_process


def say(message: str) -> None:
    """tqdm.write on the main process only (one log line per event, not one per process)."""
    if is_main_process():
        tqdm.write(message)


def wait_for_everyone() -> None:
    _state().wait_for_everyone()


def from_main(obj: Any) -> Any:
    """The main process's `obj` on every process (e.g. validation metrics that drive early stopping)."""
    if _state().num_processes == 1:
        return obj
    return broadcast_object_list([obj], from_process=0)[0]


def sync_buffers(model: torch.nn.Module) -> None:
    """Copy the main process's buffers (BatchNorm running statistics) to every process before
    evaluation: each process updated them on its own batches since DDP's last broadcast."""
    if _state().num_processes == 1:
        return
    for buf in model.buffers():
        torch.distributed.broadcast(buf.data, src=0)


def mean_over_processes(values: dict[str, float]) -> dict[str, float]:
    """Average per-process means (e.g. the epoch's training losses; every process saw as many batches)."""
    if _state().num_processes == 1:
        return values
    everyone = gather_object([values])
    return {k: sum(v[k] for v in everyone) / len(everyone) for k in values}
