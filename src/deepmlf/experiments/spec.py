"""Sweep specs: a base config plus the cells of one paper table, validated before anything trains.

A spec names a base (preset, optional YAML file, `--set`-style overrides) and its cells, either
as a cartesian `grid:` of dotted keys (Table 6's three fusion depths, Fig. 3's n_f values) or as
an explicit list of named `cells:` for ablations that are not a product (Table 11 removes one
loss term at a time). Both may be given: then every explicit cell is crossed with the grid.

Each cell becomes an ordinary run directory `out/<cell-name>`; names are readable and
filesystem-safe (`model.n_fusion=16`, `model.mm_layers=5-6-7-8-9-10-11`).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import PRESETS, Config, apply_overrides, config_from_dict, parse_override, preset_dict, read_yaml
from ..errors import ConfigError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=,+-]*$")
PRESET_KEY = "preset"  # a cell/grid key that swaps the base preset (e.g. mosei-base vs mosei-large)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_override_list(v: Any, where: str) -> list[str]:
    """Accept `set:` as a list of "k=v" strings or as a mapping of dotted keys to values."""
    if v is None:
        return []
    if isinstance(v, dict):
        return [f"{k}={_yaml_scalar(val)}" for k, val in v.items()]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ValueError(f"{where}: expected a list of 'key=value' strings or a mapping of dotted keys to values")


def _yaml_scalar(value: Any) -> str:
    """Render a value so that `apply_overrides` (which parses YAML) reads back the same object."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


class BaseSpec(_Strict):
    preset: str | None = None  # a built-in preset (mosi, mosei-base, mosei-large, sims, demo)
    config: str | None = None  # a config YAML, relative to the spec file
    set: list[str] = Field(default_factory=list)  # `--set`-style overrides applied to every cell

    @field_validator("set", mode="before")
    @classmethod
    def _set_list(cls, v: Any) -> list[str]:
        return _as_override_list(v, "base.set")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; choose one of {', '.join(PRESETS)}")
        return v


class CellSpec(_Strict):
    name: str | None = None  # defaults to a name built from the overrides
    set: dict[str, Any] = Field(default_factory=dict)  # dotted key -> value (YAML-native)

    @field_validator("set", mode="before")
    @classmethod
    def _set_mapping(cls, v: Any) -> dict[str, Any]:
        if v is None:
            return {}
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return dict(parse_override(x) for x in v)
        if not isinstance(v, dict):
            raise ValueError("cells[].set: expected a mapping of dotted keys to values, e.g. {loss.lambda_f: 0}")
        return v

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str | None) -> str | None:
        if v is not None and not SAFE_NAME.match(v):
            raise ValueError(
                f"cell name {v!r} is not filesystem-safe: use letters, digits and . _ = , + - (no spaces or /)"
            )
        return v


class ExperimentSpec(_Strict):
    """What a sweep spec and a tuning spec share: a name, the paper reference, the base config."""

    name: str  # also the default output folder (runs/<name>, runs/tune-<name>)
    paper: str | None = None  # which table / figure of the paper this reproduces
    description: str | None = None
    base: BaseSpec = Field(default_factory=BaseSpec)
    seeds: list[int] | None = None  # replaces train.seeds in every run (the paper reports >= 5)
    out: str | None = None  # output folder

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not SAFE_NAME.match(v):
            raise ValueError(f"name {v!r} is not filesystem-safe: use letters, digits and . _ = , + -")
        return v


class SweepSpec(ExperimentSpec):
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # dotted key -> values (cartesian product)
    cells: list[CellSpec] = Field(default_factory=list)  # explicit cells (ablations that are no product)

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"axis {key!r} needs at least one value")
            if len({_value_token(x) for x in values}) != len(values):
                raise ValueError(f"axis {key!r}: a value appears twice ({values})")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v:
                raise ValueError("needs at least one seed")
            if len(set(v)) != len(v):
                raise ValueError(f"a seed appears twice ({v})")
        return v

    @model_validator(mode="after")
    def _has_cells(self) -> "SweepSpec":
        if not self.grid and not self.cells:
            raise ValueError("a sweep needs `grid:` (cartesian product) or `cells:` (explicit list), or both")
        return self


# ----------------------------------------------------------------------------- cells


def _value_token(value: Any) -> str:
    """A value as it appears in a cell name: lists joined by '-', unsafe characters replaced by '_'."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, (list, tuple)):
        text = "-".join(_value_token(x) for x in value)
    elif isinstance(value, float):
        text = repr(value)
    elif value is None:
        text = "null"
    elif isinstance(value, dict):
        text = "_".join(f"{k}-{_value_token(v)}" for k, v in value.items())
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", text).strip("_")
    return text or "_"


def overrides_name(overrides: dict[str, Any]) -> str:
    """`{"model.n_fusion": 16}` -> `model.n_fusion=16`; several keys joined by ','."""
    return ",".join(f"{k}={_value_token(v)}" for k, v in overrides.items())


@dataclass(frozen=True)
class Cell:
    """One point of a sweep: its stable name and the overrides that define it."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value; may hold `preset`


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """Explicit cells (or one empty cell) crossed with the grid's cartesian product, in spec order."""
    explicit = [(c.name, dict(c.set)) for c in spec.cells] or [(None, {})]
    axes = list(spec.grid.items())
    points = [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]
    cells: list[Cell] = []
    for cell_name, cell_set in explicit:
        for point in points:
            clash = sorted(set(cell_set) & set(point))
            if clash:
                raise ConfigError(f"cell {cell_name!r} sets {clash[0]!r}, which is also a grid axis")
            parts = [p for p in (cell_name or (overrides_name(cell_set) if cell_set else ""), overrides_name(point)) if p]
            name = ",".join(parts) or "base"
            cells.append(Cell(name=name, overrides={**cell_set, **point}))
    seen: dict[str, int] = {}
    for i, c in enumerate(cells):
        if c.name in seen:
            raise ConfigError(
                f"cells #{seen[c.name] + 1} and #{i + 1} both get the name {c.name!r}: give them distinct `name:`s"
            )
        seen[c.name] = i
        if not SAFE_NAME.match(c.name) or len(c.name) > 200:
            raise ConfigError(f"cell name {c.name!r} is not filesystem-safe; give the cell an explicit `name:`")
    return cells


def axis_keys(spec: SweepSpec) -> set[str]:
    """Every dotted key some cell sets (the keys a global `--set` must not touch)."""
    keys = set(spec.grid)
    for c in spec.cells:
        keys |= set(c.set)
    return keys


# ----------------------------------------------------------------------------- loading


def load_spec(path: str | Path, model: type[BaseModel] = SweepSpec) -> BaseModel:
    """Read and validate a spec file; errors name the file and the key."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        lines = [f"invalid spec {path}:"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_s = "" if isinstance(got, (dict, list)) or err["type"] == "missing" else f" (got {got!r})"
            lines.append(f"  {key}: {msg}{got_s}")
        raise ConfigError("\n".join(lines)) from None


def load_sweep_spec(path: str | Path) -> SweepSpec:
    spec = load_spec(path, SweepSpec)
    assert isinstance(spec, SweepSpec)
    return spec


def _set_dotted(tree: dict[str, Any], key: str, value: Any, where: str) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {key!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def base_tree(base: BaseSpec, spec_path: Path | None, preset: str | None = None) -> dict[str, Any]:
    """preset <- base.config file <- base.set, as a raw dict (not yet validated)."""
    file_tree: dict[str, Any] = {}
    if base.config is not None:
        cfg_path = Path(base.config)
        if not cfg_path.is_absolute() and spec_path is not None:
            cfg_path = spec_path.parent / cfg_path
        file_tree = read_yaml(cfg_path)
    preset = preset or base.preset or file_tree.pop("preset", None)
    file_tree.pop("preset", None)
    tree = preset_dict(preset) if preset else {}
    _merge(tree, file_tree)
    apply_overrides(tree, base.set)
    return tree


def build_config(
    base: BaseSpec,
    *,
    spec_path: Path | None,
    cell_overrides: dict[str, Any],
    data: str | None = None,
    seeds: list[int] | None = None,
    cli_overrides: list[str] | None = None,
    backbones: dict[str, str] | None = None,
    where: str,
) -> Config:
    """Resolve one cell: preset <- base.config <- base.set <- cell <- --data <- seeds <- --set <- --backbone."""
    overrides = dict(cell_overrides)
    preset = overrides.pop(PRESET_KEY, None)
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    tree = base_tree(base, spec_path, preset)
    for key, value in overrides.items():
        _set_dotted(tree, key, value, where)
    if data is not None:
        _set_dotted(tree, "data.path", str(data), where)
    if seeds is not None:
        _set_dotted(tree, "train.seeds", list(seeds), where)
    apply_overrides(tree, cli_overrides)
    backbone = tree.get("model", {}).get("backbone") if isinstance(tree.get("model"), dict) else None
    if backbones and backbone in backbones:
        tree["model"]["backbone"] = backbones[backbone]
    return config_from_dict(tree, where)


def parse_backbone_map(items: list[str] | None) -> dict[str, str]:
    """`--backbone gpt2=/models/gpt2` -> {"gpt2": "/models/gpt2"}."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--backbone {item!r}: expected NAME=PATH, e.g. gpt2-large=/models/gpt2-large")
        out[name.strip()] = path.strip()
    return out
