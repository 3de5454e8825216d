"""Training, evaluation and prediction: one loop for every model, stage and task (STYLE.md habit 5).

    train_run(cfg, run_dir, resume=False)          both stages for every seed -> run directory
    pretrain_av(cfg, run_dir)                       stage 1 alone (AV encoder pre-training)
    evaluate_checkpoint(best.pt, data, split)       MMSA metrics of a trained checkpoint
    predict(best.pt, data, split, out_csv)          per-sample predictions of every head

The run directory layout is fixed in docs/contracts.md ("Run directory").
"""

from .checkpoint import load_best, save_best
from .early_stopping import EarlyStopping
from .evaluate import Predictions, collect_predictions, score
from .loop import FitResult, NonFiniteLossError, Stage, fit, make_accelerator, resolve_mixed_precision
from .optim import (
    build_optimizer,
    build_plateau,
    build_pretrain_optimizer,
    build_scheduler,
    param_groups,
    steps_per_epoch,
)
from .run import (
    RunResult,
    aggregate,
    evaluate_checkpoint,
    load_data,
    load_model_from_checkpoint,
    needs_stage1,
    predict,
    pretrain_av,
    results_table,
    train_run,
    train_seed,
    write_results,
    write_seed_outputs,
)

__all__ = [
    "EarlyStopping",
    "FitResult",
    "NonFiniteLossError",
    "Predictions",
    "RunResult",
    "Stage",
    "aggregate",
    "build_optimizer",
    "build_plateau",
    "build_pretrain_optimizer",
    "build_scheduler",
    "collect_predictions",
    "evaluate_checkpoint",
    "fit",
    "load_best",
    "load_data",
    "load_model_from_checkpoint",
    "make_accelerator",
    "needs_stage1",
    "param_groups",
    "predict",
    "pretrain_av",
    "resolve_mixed_precision",
    "results_table",
    "save_best",
    "score",
    "steps_per_epoch",
    "train_run",
    "train_seed",
    "write_results",
    "write_seed_outputs",
]
