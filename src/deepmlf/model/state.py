"""What a checkpoint holds and how parameters are counted, shared by every deepmlf model.

A checkpoint holds everything that is not the frozen backbone (STYLE.md habit 5): trainable
weights plus buffers such as BatchNorm statistics. Which tensors belong to the backbone is
decided by identity (the backbone's modules are captured once at build), never by name patterns.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from torch import Tensor, nn

from ..errors import CheckpointError


def state_without(model: nn.Module, frozen_ids: frozenset[int]) -> dict[str, Tensor]:
    """model.state_dict() minus the tensors whose identity is in `frozen_ids`."""
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items() if id(v) not in frozen_ids}


def load_strict(model: nn.Module, state: Mapping[str, Tensor], *, expected: Mapping[str, Tensor], what: str) -> None:
    """Load `state` into `model`, requiring exactly the keys and shapes of `expected`.

    Raises CheckpointError naming the missing / unexpected keys or the first mismatched shape.
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise CheckpointError(f"{what} checkpoint does not match the model: " + "; ".join(parts))
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{what} checkpoint: {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(ref.shape)} (built with a different configuration?)"
            )
    # strict=False only because the frozen backbone's keys are absent; the key check above is exact.
    model.load_state_dict(dict(state), strict=False)


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def _unique(params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for p in params:
        seen.setdefault(id(p), p)
    return list(seen.values())


def count_parameters(groups: Mapping[str, nn.Module | Iterable[nn.Parameter]]) -> dict:
    """{"trainable", "total", "by_module": {name: {"trainable", "total"}}}; tied weights count once."""
    by_module: dict[str, dict[str, int]] = {}
    everything: list[nn.Parameter] = []
    for name, group in groups.items():
        params = _unique(group.parameters() if isinstance(group, nn.Module) else group)
        everything.extend(params)
        by_module[name] = {
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "total": sum(p.numel() for p in params),
        }
    everything = _unique(everything)
    return {
        "trainable": sum(p.numel() for p in everything if p.requires_grad),
        "total": sum(p.numel() for p in everything),
        "by_module": by_module,
    }
