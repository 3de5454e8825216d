"""Hyper-parameter search with Optuna: each trial an ordinary run dir, many workers on one study.

The spec holds a base config (like a sweep's) and a search space over dotted config keys, e.g.
the paper's §5.5 knobs: `train.lr`, `model.n_fusion`, the λ's of eq. 14, `model.augment.p_perm`
and `model.augment.p_apply`. The objective is the validation key metric (`train.key_metric`)
of each trial's best epoch, read from its history.jsonl (mean over the trial's seeds), optimised
in the metric's direction (the run's task, deepmlf.tasks).

Storage is a URL: `journal:///path/study.log` (Optuna's JournalFileBackend: many processes on
one machine, or on a shared file system) or an RDB URL such as `sqlite:///study.db` or
`postgresql://...` (several machines). Every worker opens the study with `load_if_exists=True`.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import Field, field_validator, model_validator

from ..config import DATASET_INFER, Config
from ..errors import ConfigError, DataError
from .. import rundir
from ..tasks import MSATask
from .spec import ExperimentSpec, _Strict, _value_token, build_config, load_spec


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _range(self) -> "FloatParam":
        if not self.low < self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log=true needs low > 0 and no step")
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _range(self) -> "IntParam":
        if not self.low < self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log=true needs low > 0 and step 1")
        return self


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)  # scalars, or lists (e.g. mm_layers) which Optuna sees by name

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v: list[Any]) -> list[Any]:
        if len({_value_token(x) for x in v}) != len(v):
            raise ValueError(f"choices {v}: a choice appears twice")
        return v

    def optuna_choices(self) -> list[Any]:
        """Optuna stores only None/bool/int/float/str: lists and mappings are offered by their name."""
        if all(x is None or isinstance(x, (bool, int, float, str)) for x in self.choices):
            return list(self.choices)
        return [_value_token(x) for x in self.choices]

    def value_of(self, suggested: Any) -> Any:
        return self.choices[self.optuna_choices().index(suggested)]


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class PrunerSpec(_Strict):
    kind: Literal["median", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0)  # trials that finish before any pruning
    n_warmup_steps: int = Field(2, ge=0)  # epochs of a trial before it can be pruned


class TuneSpec(ExperimentSpec):
    # `seeds`: per trial (one is usual when tuning); `out`: trial dirs go to out/trial-<n> (runs/tune-<name>)
    search: dict[str, Param]  # dotted config key -> distribution
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)

    @field_validator("search")
    @classmethod
    def _non_empty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("search: name at least one config key to tune")
        return v


def load_tune_spec(path: str | Path) -> TuneSpec:
    spec = load_spec(path, TuneSpec)
    assert isinstance(spec, TuneSpec)
    return spec


# ----------------------------------------------------------------------------- storage


def open_storage(url: str):
    """`journal:///abs/path.log` | `journal://rel/path.log` -> JournalStorage; other URLs -> RDBStorage."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal://"):
        path = url[len("journal://"):]
        if not path:
            raise ConfigError(f"--storage {url!r}: expected journal:///path/to/study.log")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if "://" not in url:
        raise ConfigError(
            f"--storage {url!r}: expected a URL, e.g. journal:///runs/study.log (one machine) or "
            "sqlite:///runs/study.db / postgresql://user@host/db (several machines)"
        )
    engine_kwargs = {}
    if url.startswith("sqlite:"):
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        # Several processes write one SQLite file: wait for the lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    from sqlalchemy.exc import IntegrityError, OperationalError

    # Heartbeats mark the trial of a killed worker FAILED instead of RUNNING forever.
    last_error: Exception | None = None
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=60,
                                                  grace_period=300)
        except (OperationalError, IntegrityError) as e:
            # Workers that start together race to create the schema ("table studies already exists",
            # "UNIQUE constraint failed: alembic_version"); the loser finds it complete on a retry.
            last_error = e
            time.sleep(0.5 * (attempt + 1))
        except Exception as e:  # a bad URL, a missing driver, an unreachable server
            last_error = e
            break
    raise ConfigError(f"--storage {url!r}: cannot open ({type(last_error).__name__}: {last_error})") from None


# ----------------------------------------------------------------------------- objective


def key_metric_direction(cfg: Config) -> str:
    """"max" or "min" for `train.key_metric`, from the task; ConfigError when the task lacks it."""
    if cfg.data.dataset == DATASET_INFER:
        # The file decides the dataset, and each trial's train_run checks the metric against it before
        # it trains; a metric's direction is the same for every MSA dataset.
        return MSATask().direction(cfg.train.key_metric)
    return MSATask.of_config(cfg).check_key_metric(cfg.train.key_metric)


def objective_value(run_dir: Path, cfg: Config) -> float:
    """Mean over the run's seeds of the best validation `train.key_metric` (its history.jsonl)."""
    metric = cfg.train.key_metric
    direction = key_metric_direction(cfg)
    values = []
    for seed in cfg.train.seeds:
        best = rundir.best_valid(rundir.history(rundir.seed_dir(run_dir, seed)), metric, direction)
        if best is None:
            raise DataError(
                f"{rundir.seed_dir(run_dir, seed) / 'history.jsonl'}: no epoch reports valid[{metric!r}] "
                "(train.key_metric); cannot score the trial"
            )
        values.append(best[1])
    return sum(values) / len(values)


@dataclass
class TuneContext:
    spec: TuneSpec
    spec_path: Path
    out: Path
    data: str | None
    overrides: list[str]
    backbones: dict[str, str]

    def config_for(self, params: dict[str, Any], where: str) -> Config:
        return build_config(
            self.spec.base, spec_path=self.spec_path, cell_overrides=params, data=self.data, seeds=self.spec.seeds,
            cli_overrides=self.overrides, backbones=self.backbones, where=where,
        )

    @property
    def direction(self) -> str:
        return key_metric_direction(self.config_for({}, f"spec {self.spec_path}"))


def prepare(
    spec_path: str | Path,
    *,
    data: str | None = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    backbones: dict[str, str] | None = None,
) -> TuneContext:
    """Load the spec and check, before any trial, that every search key and bound gives a valid config."""
    spec_path = Path(spec_path)
    spec = load_tune_spec(spec_path)
    searched = set(spec.search)
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key in searched:
            raise ConfigError(f"--set {item!r}: {key!r} is searched by {spec_path}; remove it from `search:` to fix it")
    ctx = TuneContext(spec, spec_path, Path(out) if out else Path(spec.out or f"runs/tune-{spec.name}"),
                      data, list(overrides or []), dict(backbones or {}))
    errors = []
    try:
        ctx.config_for({}, f"spec {spec_path}, base")
    except ConfigError as e:
        raise ConfigError(f"{e}\n(nothing was tuned)") from None
    for key, p in spec.search.items():
        probes = p.choices if isinstance(p, CategoricalParam) else [p.low, p.high]
        for value in probes:
            try:
                ctx.config_for({key: value}, f"spec {spec_path}, search.{key}={value!r}")
            except ConfigError as e:
                errors.append(str(e))
    if errors:
        raise ConfigError("the search space reaches invalid configs; nothing was tuned:\n" + "\n".join(errors))
    return ctx


def suggest(trial, key: str, p: Any) -> Any:
    if isinstance(p, FloatParam):
        return trial.suggest_float(key, p.low, p.high, log=p.log, step=p.step)
    if isinstance(p, IntParam):
        return trial.suggest_int(key, p.low, p.high, log=p.log, step=p.step)
    return p.value_of(trial.suggest_categorical(key, p.optuna_choices()))


class EpochReporter:
    """Trainer epoch callback: reports the first seed's best-so-far validation key metric to Optuna
    (step = epoch) and stops the trial when the pruner (MedianPruner) says so."""

    def __init__(self, trial, metric: str, direction: str):
        self.trial, self.metric, self.direction = trial, metric, direction
        self.best: float | None = None
        self.last_epoch = 0
        self.first_seed_over = False

    def __call__(self, record: dict[str, Any]) -> None:
        import optuna

        epoch = int(record.get("epoch", 0))
        if self.first_seed_over or epoch <= self.last_epoch:
            self.first_seed_over = True  # epochs restart: the next seed; its curve is not comparable step-wise
            return
        self.last_epoch = epoch
        value = (record.get("valid") or {}).get(self.metric)
        if not isinstance(value, (int, float)) or value != value:  # missing or NaN
            return
        better = max if self.direction == "max" else min
        self.best = float(value) if self.best is None else better(self.best, float(value))
        self.trial.report(self.best, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: best valid {self.metric} so far {self.best:.4f}")


def make_objective(ctx: TuneContext, *, progress: bool, announce: Callable[[str], None]) -> Callable:
    from ..train.run import train_run  # heavy import: only when a trial trains

    def objective(trial) -> float:
        params = {key: suggest(trial, key, p) for key, p in ctx.spec.search.items()}
        run_dir = ctx.out / f"trial-{trial.number}"
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("worker_host", socket.gethostname())
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("params", {k: v for k, v in params.items()})  # real values (lists included)
        cfg = ctx.config_for(params, f"trial {trial.number}")
        if run_dir.exists() and any(run_dir.iterdir()):
            # Trial numbers restart with each study: never mix another study's run into this one.
            raise DataError(f"{run_dir} already exists (from another study?); give this study its own --out")
        announce(f"trial {trial.number} (pid {os.getpid()}): " + ", ".join(f"{k}={v}" for k, v in params.items()))
        reporter = EpochReporter(trial, cfg.train.key_metric, key_metric_direction(cfg))
        train_run(cfg, run_dir, resume=False, progress=progress, callbacks=[reporter])
        value = objective_value(run_dir, cfg)
        announce(f"trial {trial.number}: valid {cfg.train.key_metric} = {value:.4f}")
        return value

    return objective


def open_study(ctx: TuneContext, storage_url: str, study_name: str, *, sampler_seed: int | None = None):
    import optuna

    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=ctx.spec.pruner.n_startup_trials,
                                    n_warmup_steps=ctx.spec.pruner.n_warmup_steps)
        if ctx.spec.pruner.kind == "median" else optuna.pruners.NopPruner()
    )
    # constant_liar: parallel workers do not all sample around the same pending point.
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    direction = "maximize" if ctx.direction == "max" else "minimize"
    try:
        study = optuna.create_study(
            storage=open_storage(storage_url), study_name=study_name, direction=direction,
            sampler=sampler, pruner=pruner, load_if_exists=True,
        )
    except ValueError as e:
        raise ConfigError(f"study {study_name!r} in {storage_url}: {e}") from None
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {study_name!r} in {storage_url} was created to {study.direction.name.lower()}, but "
            f"train.key_metric={ctx.config_for({}, 'base').train.key_metric!r} asks to {direction}"
        )
    study.set_user_attr("spec", str(ctx.spec_path))
    return study


def run_worker(
    ctx: TuneContext,
    *,
    storage_url: str,
    study_name: str,
    n_trials: int,
    total_trials: int | None = None,
    sampler_seed: int | None = None,
    progress: bool = True,
    announce: Callable[[str], None] = print,
):
    """Run `n_trials` trials in this process on the shared study (failed trials are recorded, not raised)."""
    import optuna

    study = open_study(ctx, storage_url, study_name, sampler_seed=sampler_seed)
    if not study.trials and ctx.out.is_dir() and any(ctx.out.glob("trial-*")):
        raise ConfigError(
            f"{ctx.out} already holds trial-* run dirs but study {study_name!r} is new; "
            "give the new study its own --out"
        )
    callbacks = []
    if total_trials is not None:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
        callbacks.append(optuna.study.MaxTrialsCallback(total_trials, states=states))
    objective = make_objective(ctx, progress=progress, announce=announce)
    study.optimize(objective, n_trials=n_trials, catch=(Exception,), callbacks=callbacks, gc_after_trial=True)
    return study


# ----------------------------------------------------------------------------- summary


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_markdown(study, ctx: TuneContext) -> str:
    import optuna

    trials = study.get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.state.name] = by_state.get(t.state.name, 0) + 1
    metric = ctx.config_for({}, "base").train.key_metric
    lines = [f"# Optuna study `{study.study_name}`", "",
             f"Spec `{ctx.spec_path}`; objective: validation {metric} of the best epoch "
             f"({study.direction.name.lower()}); trials: "
             + ", ".join(f"{n} {s.lower()}" for s, n in sorted(by_state.items())) + ".", ""]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        lines.append("No trial has completed yet.")
        return "\n".join(lines) + "\n"
    best = study.best_trial
    lines += ["## Best trial", "", "| parameter | value |", "|---|---|"]
    lines.append(f"| trial | {best.number} |")
    lines.append(f"| valid {metric} | {best.value:.4f} |")
    for k, v in (best.user_attrs.get("params") or best.params).items():
        lines.append(f"| {k} | {v} |")
    run_dir = best.user_attrs.get("run_dir", "")
    lines.append(f"| run dir | {run_dir} |")
    lines += ["", "Re-train the best setting with the paper's five seeds (its resolved config holds every key):", "",
              f"    deepmlf train --config {run_dir}/config.yaml --seeds 1111,1112,1113,1114,1115 "
              f"--out {Path(run_dir).parent / 'best'}"]
    reverse = study.direction.name.lower() == "maximize"
    ranked = sorted(complete, key=lambda t: t.value, reverse=reverse)[:10]
    keys = list(ctx.spec.search)
    lines += ["", "## Top trials", "", "| trial | " + " | ".join(keys) + f" | {metric} | worker |",
              "|" + "---|" * (len(keys) + 3)]
    for t in ranked:
        params = t.user_attrs.get("params") or t.params
        lines.append(f"| {t.number} | " + " | ".join(_short(params.get(k)) for k in keys)
                     + f" | {t.value:.4f} | {t.user_attrs.get('worker_host', '?')}:{t.user_attrs.get('worker_pid', '?')} |")
    return "\n".join(lines) + "\n"
