"""Paper-scale experiments: sweep specs over config keys, aggregated result tables and plots, Optuna tuning.

    from deepmlf.experiments import plan_sweep, run_sweep, collect, write_results
    plan = plan_sweep("experiments/table6-fusion-depth-sims.yaml", data="/data/SIMS/unaligned_39.pkl")
    run_sweep(plan, plan.cells)            # every cell -> train_run(cfg, out/<cell>, resume=True)
    write_results(collect(["runs/a", "runs/b"]), "runs/")
"""

from .results import ResultsTable, RunRow, collect, to_csv, to_markdown, write_results
from .spec import Cell, SweepSpec, expand_cells, load_sweep_spec
from .sweep import PlannedCell, SweepPlan, aggregate_sweep, parse_shard, plan_sweep, run_sweep, select_cells

__all__ = [
    "Cell", "PlannedCell", "ResultsTable", "RunRow", "SweepPlan", "SweepSpec", "aggregate_sweep", "collect",
    "expand_cells", "load_sweep_spec", "parse_shard", "plan_sweep", "run_sweep", "select_cells", "to_csv",
    "to_markdown", "write_results",
]
