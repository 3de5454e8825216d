"""Run a sweep spec: every cell an ordinary train run in `out/<cell-name>`, resumable, splittable.

`plan_sweep` resolves and validates every cell's config before anything trains (all errors at
once). `run_sweep` then calls `train_run(cfg, cell_dir, resume=True)` for each selected cell, so
re-running a spec skips finished seeds (DONE) and continues interrupted ones (last.pt). Several
workers split one sweep with `--cell NAME` or `--shard i/n`; each writes only its own cell dirs,
and any of them can re-aggregate the table at the end.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import Config
from ..errors import ConfigError, DeepMLFError
from .. import rundir
from .results import ResultsTable, collect, write_results
from .spec import Cell, SweepSpec, axis_keys, build_config, expand_cells, load_sweep_spec


@dataclass
class PlannedCell:
    index: int  # 0-based position in the spec (what --shard counts)
    cell: Cell
    config: Config
    run_dir: Path
    state: rundir.SeedState  # done / partial / todo for the config's seeds
    n_done: int
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (on disk, from spec) when they differ

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def seeds(self) -> list[int]:
        return list(self.config.train.seeds)


@dataclass
class SweepPlan:
    spec: SweepSpec
    spec_path: Path
    out: Path
    cells: list[PlannedCell]
    unused_backbones: list[str] = field(default_factory=list)  # --backbone names no cell uses

    @property
    def title(self) -> str:
        return self.spec.paper or self.spec.name


def _config_changes(run_dir: Path, cfg: Config) -> dict[str, tuple[Any, Any]]:
    """Keys where a cell dir's trained config.yaml disagrees with what the spec now resolves to.

    Same rule as the trainer (`config_differences`, which ignores run-local keys such as the seed
    list and the data path), checked here for every cell before the first one trains.
    """
    from ..train.run import config_differences

    tree = rundir.read_config_tree(run_dir)
    started = any((p / "DONE").exists() or (p / "last.pt").exists() for p in rundir.seed_dirs(run_dir).values())
    if tree is None or not started:
        return {}
    old, new = rundir.flatten(tree), rundir.flatten(cfg.to_dict())
    return {k: (old.get(k), new.get(k)) for k in config_differences(tree, cfg.to_dict())}


def plan_sweep(
    spec_path: str | Path,
    *,
    overrides: list[str] | None = None,
    data: str | None = None,
    out: str | Path | None = None,
    backbones: dict[str, str] | None = None,
) -> SweepPlan:
    """Resolve every cell of a spec into a validated Config and its run dir; raise once listing every error."""
    spec_path = Path(spec_path)
    spec = load_sweep_spec(spec_path)
    cells = expand_cells(spec)

    axes = axis_keys(spec)
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key in axes:
            raise ConfigError(
                f"--set {item!r}: {key!r} is an axis of the sweep {spec_path} (cells set it); "
                "change the spec instead of overriding every cell with one value"
            )

    out_dir = Path(out) if out is not None else Path(spec.out or f"runs/{spec.name}")
    planned: list[PlannedCell] = []
    errors: list[str] = []
    used_backbones: set[str] = set()
    for i, cell in enumerate(cells):
        where = f"spec {spec_path}, cell {cell.name!r}"
        try:
            cfg = build_config(
                spec.base, spec_path=spec_path, cell_overrides=cell.overrides, data=data, seeds=spec.seeds,
                cli_overrides=overrides, backbones=backbones, where=where,
            )
        except ConfigError as e:
            errors.append(str(e))
            continue
        if backbones:
            used_backbones |= {name for name, path in backbones.items() if cfg.model.backbone == path}
        run_dir = out_dir / cell.name
        state, n_done = rundir.run_state(run_dir, list(cfg.train.seeds))
        planned.append(PlannedCell(i, cell, cfg, run_dir, state, n_done, _config_changes(run_dir, cfg)))
    if errors:
        raise ConfigError(f"{len(errors)} of {len(cells)} cells are invalid; nothing was trained:\n" + "\n".join(errors))
    unused = sorted(set(backbones or {}) - used_backbones)
    return SweepPlan(spec=spec, spec_path=spec_path, out=out_dir, cells=planned, unused_backbones=unused)


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard i/n` (0-based i): this worker runs the cells whose index % n == i."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return i, n


def select_cells(plan: SweepPlan, *, names: list[str] | None = None, shard: tuple[int, int] | None = None) -> list[PlannedCell]:
    cells = plan.cells
    if names:
        known = {c.name: c for c in cells}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"--cell {unknown[0]!r} is not a cell of {plan.spec_path}; cells are: " + ", ".join(known)
            )
        cells = [c for c in cells if c.name in set(names)]
    if shard is not None:
        i, n = shard
        cells = [c for c in cells if c.index % n == i]
    return cells


def check_unchanged(cells: list[PlannedCell]) -> None:
    """Refuse to mix results: a cell dir trained with another config must not be resumed with this one."""
    bad = [c for c in cells if c.changed]
    if not bad:
        return
    lines = []
    for c in bad:
        diffs = "; ".join(f"{k}: {old!r} on disk, {new!r} now" for k, (old, new) in list(c.changed.items())[:4])
        lines.append(f"  {c.run_dir}: {diffs}")
    raise ConfigError(
        "these cell directories were trained with a different config than the spec now gives "
        "(use another --out, or delete them to retrain):\n" + "\n".join(lines)
    )


@dataclass
class SweepOutcome:
    ran: list[str]
    failed: dict[str, str]  # cell name -> one-line error
    table: ResultsTable | None
    written: list[Path]


def run_sweep(
    plan: SweepPlan,
    cells: list[PlannedCell],
    *,
    progress: bool = True,
    keep_going: bool = False,
    announce: Callable[[str], None] = print,
) -> SweepOutcome:
    """Train the selected cells in order (finished seeds are skipped), then aggregate the whole sweep."""
    from ..train.run import train_run  # heavy import: only when something trains

    from ..io import check_output_dir

    check_unchanged(cells)
    check_output_dir(plan.out, "sweep --out")  # a full, read-only or file --out fails here, not after a cell
    ran, failed = [], {}
    for k, c in enumerate(cells, 1):
        seeds = ", ".join(str(s) for s in c.seeds)
        if c.state == "done":
            announce(f"cell {k}/{len(cells)} {c.name}: all {len(c.seeds)} seeds done, skipped")
            continue
        announce(f"cell {k}/{len(cells)} {c.name} ({c.state}, {c.n_done}/{len(c.seeds)} seeds done; seeds {seeds}) -> {c.run_dir}")
        try:
            train_run(c.config, c.run_dir, resume=True, progress=progress)
            ran.append(c.name)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one cell failing (e.g. out of memory) need not stop the others
            if not keep_going:
                raise
            failed[c.name] = f"{type(e).__name__}: {e}".splitlines()[0]
            announce(f"cell {c.name} failed: {failed[c.name]}")
            if not isinstance(e, DeepMLFError):  # a known error (locked, bad data, disk full) is its message
                traceback.print_exc()
    table, written = aggregate_sweep(plan)
    return SweepOutcome(ran=ran, failed=failed, table=table, written=written)


def aggregate_sweep(plan: SweepPlan) -> tuple[ResultsTable | None, list[Path]]:
    """results.md / results.csv / plots for every cell with at least one finished seed, into plan.out."""
    present = [c for c in plan.cells if c.run_dir.is_dir()]
    if not present:
        return None, []
    table = collect([c.run_dir for c in present], labels=[c.name for c in present])
    if not table.rows:
        return table, []
    return table, write_results(table, plan.out, title=plan.title)
