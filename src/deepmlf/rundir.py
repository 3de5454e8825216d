"""Reading run directories (layout in docs/contracts.md, "Run directory"): what is finished, what it scored.

Only seeds whose `DONE` marker exists count as results: a seed killed mid-run leaves `last.pt`
and a partial `history.jsonl` behind, which `train_run(..., resume=True)` continues from.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from .config import load_yaml
from .errors import ConfigError, RunDirError
from .io import read_jsonl
from .tasks import MSATask, Task, from_spec

TASK_FILE = "task.json"  # the run's Task.spec(): what its metrics are (deepmlf.tasks)
SeedState = Literal["done", "partial", "todo"]
_SEED_DIR = re.compile(r"^seed-(-?\d+)$")


def seed_dir(run_dir: Path, seed: int) -> Path:
    return Path(run_dir) / f"seed-{seed}"


def seed_dirs(run_dir: Path) -> dict[int, Path]:
    """Every `seed-<S>` folder of a run, by seed, in seed order."""
    run_dir = Path(run_dir)
    found = {}
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            m = _SEED_DIR.match(p.name)
            if m and p.is_dir():
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def seed_state(path: Path) -> SeedState:
    """done: DONE written; partial: started (a checkpoint or history line exists); todo: nothing yet."""
    if (path / "DONE").exists():
        return "done"
    if (path / "last.pt").exists() or (path / "history.jsonl").exists() or (path / "stage1").exists():
        return "partial"
    return "todo"


def run_state(run_dir: Path, seeds: list[int]) -> tuple[SeedState, int]:
    """State of a run for the given seeds, and how many of them are done."""
    states = [seed_state(seed_dir(run_dir, s)) for s in seeds]
    n_done = states.count("done")
    if n_done == len(seeds):
        return "done", n_done
    if n_done or "partial" in states:
        return "partial", n_done
    return "todo", n_done


def done_seeds(run_dir: Path) -> list[int]:
    return [s for s, p in seed_dirs(run_dir).items() if seed_state(p) == "done"]


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e})") from None


def read_metrics(path: Path) -> dict[str, float]:
    """A test_metrics.json: MMSA metric name -> value (accuracies as fractions); other entries dropped."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise RunDirError(f"{path}: expected a JSON object of metric name -> value, got {type(raw).__name__}")
    metrics = raw["metrics"] if isinstance(raw.get("metrics"), dict) else raw
    return {str(k): float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_gates(path: Path) -> list[dict[str, float]]:
    """A gates.json: [{"layer", "gate_attn", "gate_ffw"}, ...] (a {"gates": [...]} wrapper is accepted)."""
    raw = read_json(path)
    if isinstance(raw, dict):
        raw = raw.get("gates", raw.get("layers"))
    if not isinstance(raw, list) or not all(isinstance(g, dict) and "layer" in g for g in raw):
        raise RunDirError(f"{path}: expected a list of {{'layer', 'gate_attn', 'gate_ffw'}} objects")
    return raw


def seed_test_metrics(run_dir: Path) -> dict[int, dict[str, float]]:
    """`seed -> MMSA test metrics` for every finished seed (values as fractions, MAE/Corr raw)."""
    out: dict[int, dict[str, float]] = {}
    for seed in done_seeds(run_dir):
        path = seed_dir(run_dir, seed) / "test_metrics.json"
        if not path.exists():
            raise RunDirError(f"{path} is missing (the seed is marked DONE, so the run directory is damaged)")
        out[seed] = read_metrics(path)
    return out


def gate_values(run_dir: Path) -> dict[int, list[dict[str, float]]]:
    """`seed -> [{"layer", "gate_attn", "gate_ffw"}, ...]` for finished seeds that wrote gates.json."""
    out: dict[int, list[dict[str, float]]] = {}
    for seed in done_seeds(run_dir):
        path = seed_dir(run_dir, seed) / "gates.json"
        if path.exists():
            out[seed] = read_gates(path)
    return out


def read_config_tree(run_dir: Path) -> dict[str, Any] | None:
    """The resolved config a run was trained with (its config.yaml), or None if it has none yet."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return None
    try:
        tree = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        raise RunDirError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(tree, dict):
        raise RunDirError(f"{path}: expected a mapping at top level")
    return tree


def read_task(run_dir: Path, tree: dict[str, Any] | None = None) -> Task | None:
    """The task a run was scored by: its task.json; for run dirs written before task.json
    existed, MSA on the config's `data.dataset`. None when the run dir has neither."""
    path = Path(run_dir) / TASK_FILE
    if path.is_file():
        try:
            return from_spec(read_json(path), str(path))
        except ConfigError as e:
            raise RunDirError(str(e)) from None
    tree = read_config_tree(run_dir) if tree is None else tree
    if tree is None:
        return None
    dataset = (tree.get("data") or {}).get("dataset", "mosi")
    try:
        return MSATask(str(dataset))
    except ConfigError as e:
        raise RunDirError(f"{Path(run_dir) / 'config.yaml'}: {e}") from None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"n_fusion": 12}} -> {"model.n_fusion": 12}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def best_valid(history: list[dict[str, Any]], metric: str, direction: str) -> tuple[int, float] | None:
    """(epoch, value) of the best validation epoch by `metric`; None if no epoch reported it."""
    best: tuple[int, float] | None = None
    for i, rec in enumerate(history):
        valid = rec.get("valid") or {}
        v = valid.get(metric)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(float(v)):
            continue
        v = float(v)
        if best is None or (v > best[1] if direction == "max" else v < best[1]):
            best = (int(rec.get("epoch", i)), v)
    return best


def history(seed_path: Path) -> list[dict[str, Any]]:
    path = Path(seed_path) / "history.jsonl"
    return read_jsonl(path) if path.exists() else []
