"""ERC sweeps: the sweep spec format of `deepmlf sweep` (grid and/or cells) over the ERC config tree.

Each cell is an ordinary ERC run directory `out/<cell>` trained by `train_erc` (resumable: a
finished seed is skipped), then one table of every cell's mean ± std over seeds (test split;
selection on valid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ..config_erc import ERC_PRESETS, ERCConfig, load_erc_config
from .spec import BaseSpec, Cell, SweepSpec, _yaml_scalar, expand_cells, load_spec


class ERCBaseSpec(BaseSpec):
    """The sweep's `base:` block, with the ERC presets (erc-meld, erc-iemocap, erc-demo, erc-authors)."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:  # replaces BaseSpec's (MSA presets) by name
        if v is not None and v not in ERC_PRESETS:
            raise ValueError(f"unknown ERC preset {v!r}; choose one of {', '.join(ERC_PRESETS)}")
        return v


class ERCSweepSpec(SweepSpec):
    base: ERCBaseSpec = Field(default_factory=ERCBaseSpec)  # type: ignore[assignment]


def cell_config(spec: ERCSweepSpec, cell: Cell, spec_path: Path, extra: list[str]) -> ERCConfig:
    config = (spec_path.parent / spec.base.config) if spec.base.config else None
    sets = list(spec.base.set) + [f"{k}={_yaml_scalar(v)}" for k, v in cell.overrides.items()]
    if spec.seeds is not None:
        sets.append(f"train.seeds={_yaml_scalar(spec.seeds)}")
    return load_erc_config(config, preset=spec.base.preset, overrides=sets + list(extra))


def plan(spec_path: str | Path, extra: list[str] | None = None) -> tuple[ERCSweepSpec, list[tuple[Cell, ERCConfig]]]:
    """Every cell's validated config (nothing trains): a bad cell fails before the first one runs."""
    spec_path = Path(spec_path)
    spec = load_spec(spec_path, ERCSweepSpec)
    return spec, [(c, cell_config(spec, c, spec_path, list(extra or []))) for c in expand_cells(spec)]


def run_erc_sweep(spec_path: str | Path, *, extra: list[str] | None = None, out: str | Path | None = None,
                  only: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    from ..train.erc_run import train_erc

    spec, cells = plan(spec_path, extra)
    root = Path(out or spec.out or f"runs/{spec.name}")
    results = {}
    for cell, cfg in cells:
        if only and cell.name not in only:
            continue
        results[cell.name] = train_erc(cfg, root / cell.name, resume=True, progress=progress)
    return results
