"""MAGTKD runs on the ONE loop (`loop.fit`) with the `erc` task: stage 1 then stage 2, per seed.

    RUN_DIR/config.yaml, task.json, speakers.json, results.{csv,json}
    RUN_DIR/seed-<S>/stage1/<head>/{history.jsonl, best.pt, last.pt}   head = text (teacher), audio, audio_kd, video, video_kd
    RUN_DIR/seed-<S>/stage1/features/<head>.npz                          the features stage 2 reads (ids, X)
    RUN_DIR/seed-<S>/stage1/metrics.json                                 test metrics of each head (Table 3's T/A/A_KD/V/V_KD rows)
    RUN_DIR/seed-<S>/{history.jsonl, best.pt, last.pt, test_metrics.json, predictions_test.csv, DONE}

Every selection (stage 1 and 2) is on the valid split; test is scored once, with the best
validation checkpoint (MAGTKD's code selected stage 2 on test: DESIGN.md §6).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import yaml

from ..config_erc import ERCConfig, erc_config_from_dict
from ..data.erc import Conversation, ERCData, load_erc
from ..data.erc.batch import ConversationDataset, dialogue_loader
from ..encoders.features import attach_features, save_features
from ..errors import ConfigError, DataError, RunDirError
from ..io import write_json, write_text
from ..model.magt import stage2_inputs
from ..model.registry import build_arch, get_arch
from ..rundir import seed_dir, seed_dirs
from ..runlock import run_lock
from ..tasks import ClassificationTask
from .checkpoint import BEST, load_best
from .distributed import say
from .evaluate import Predictions, collect_predictions
from .loop import EpochCallback, FitResult, Stage, fit, make_accelerator
from .run import (DONE, RunResult, aggregate, config_differences, guard_run_dir, remove_previous_run, results_table,
                  write_results, write_seed_outputs)

STAGE1_HEADS = {"text": "text", "audio": "audio", "audio_kd": "audio", "video": "video", "video_kd": "video"}


# ----------------------------------------------------------------------------- data


def load_erc_data(cfg: ERCConfig) -> ERCData:
    if cfg.data.path is None:
        raise ConfigError("data.path is not set: give a conversation file or folder (deepmlf erc data inspect PATH)")
    d = cfg.data
    data = load_erc(d.path, source=d.source, classes=d.classes, label_order=d.label_order, speaker_mode=d.speaker_mode)
    for modality, path in d.features.items():
        attach_features(data, modality, path)
    return data


def resolve(cfg: ERCConfig, data: ERCData) -> ERCConfig:
    """The config with what the data decides filled in: class names (in order) and the speaker count."""
    tree = cfg.model_dump()
    tree["data"]["classes"] = list(data.classes)
    if tree["model"]["n_speakers"] is None:
        tree["model"]["n_speakers"] = data.n_speakers()
    return erc_config_from_dict(tree, "resolved ERC config")


def erc_task(cfg: ERCConfig) -> ClassificationTask:
    return ClassificationTask(cfg.data.classes, dataset=cfg.data.name, key_metric=cfg.train.key_metric)


def _dims(data: ERCData) -> dict[str, int]:
    conv = next(c for convs in data.splits.values() for c in convs)
    return {m: int(f.shape[1]) for m, f in conv.features.items()}


def _check_splits(data: ERCData) -> None:
    for s in ("train", "valid", "test"):
        if s not in data.splits or not data.splits[s]:
            raise DataError(f"{data.path}: no {s!r} split; ERC training selects on valid and scores test "
                            f"(has {', '.join(data.splits) or 'none'})")


def with_features(data: ERCData, features: dict[str, dict[str, np.ndarray]]) -> ERCData:
    """A copy of `data` whose utterances carry `features[name][key]` (key = "<split>/<utterance_id>")."""
    out = copy.copy(data)
    out.splits = {}
    for split, convs in data.splits.items():
        new = []
        for c in convs:
            keys = [f"{split}/{u}" for u in c.utterance_ids]
            new.append(Conversation(c.dialogue_id, c.utterance_ids, c.speakers, c.texts, c.labels,
                                    {n: np.stack([f[k] for k in keys]) for n, f in features.items()}))
        out.splits[split] = new
    return out


# ----------------------------------------------------------------------------- one stage on the loop


def _fit(cfg: ERCConfig, model: torch.nn.Module, data: ERCData, inputs: list[str], out_dir: Path, *, name: str,
         seed: int, lr: float, weight_decay: float, epochs: int, early_stop: int, warmup_epochs: float,
         resume: bool, progress: bool, callbacks: Iterable[EpochCallback] = ()) -> FitResult:
    from transformers import get_linear_schedule_with_warmup

    vocab = data.speaker_vocab
    n_spk = cfg.model.n_speakers
    train = ConversationDataset(data, "train", inputs, vocab=vocab, n_speakers=n_spk)
    valid = ConversationDataset(data, "valid", inputs, vocab=vocab, n_speakers=n_spk)
    train_loader = dialogue_loader(train, batch_size=cfg.data.batch_size, shuffle=True, seed=seed)
    valid_loader = dialogue_loader(valid, batch_size=cfg.data.eval_batch_size, shuffle=False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = len(train_loader) if cfg.train.limit_batches is None else min(len(train_loader), cfg.train.limit_batches)
    sched = get_linear_schedule_with_warmup(opt, int(round(warmup_epochs * steps)), max(1, steps * epochs))
    stage = Stage(name=name, model=model, optimizer=opt, task=erc_task(cfg), key_metric=cfg.train.key_metric,
                  max_epochs=epochs, early_stop=early_stop, scheduler=sched, clip_grad=cfg.train.clip_norm,
                  clip_mode="norm", limit_batches=cfg.train.limit_batches, checkpoint_meta={"config": cfg.model_dump()})
    result = fit(stage, train_loader, valid_loader, out_dir, accelerator=make_accelerator("no", 1), resume=resume,
                 progress=progress, callbacks=callbacks)
    model.load_trainable_state_dict(load_best(out_dir / BEST)["model"])
    return result


def predict_split(cfg: ERCConfig, model: torch.nn.Module, data: ERCData, split: str, inputs: list[str]) -> Predictions:
    ds = ConversationDataset(data, split, inputs, vocab=data.speaker_vocab, n_speakers=cfg.model.n_speakers)
    return collect_predictions(model, dialogue_loader(ds, batch_size=cfg.data.eval_batch_size, shuffle=False),
                               task=erc_task(cfg))


@torch.no_grad()
def _features_of(model: torch.nn.Module, cfg: ERCConfig, data: ERCData, inputs: list[str]) -> dict[str, np.ndarray]:
    """Every utterance's stage-1 feature (the head's f), keyed "<split>/<utterance_id>"."""
    model.eval()
    out: dict[str, np.ndarray] = {}
    for split in data.splits:
        ds = ConversationDataset(data, split, inputs, vocab=data.speaker_vocab, n_speakers=cfg.model.n_speakers)
        for batch in dialogue_loader(ds, batch_size=cfg.data.eval_batch_size, shuffle=False):
            f = model(batch).features.numpy()
            out.update(zip(batch.ids, f))
    return out


# ----------------------------------------------------------------------------- stage 1


def stage1_heads(cfg: ERCConfig, data: ERCData) -> list[str]:
    """Which stage-1 heads a run trains: the text teacher, and per audio/video modality the inputs stage 2 reads
    (plus the CE-only student whenever a KD one is trained: Table 3's A vs A_KD rows)."""
    dims = _dims(data)
    if "text" not in dims:
        raise DataError(f"{data.path}: the data has no text features (run `deepmlf erc extract` and give "
                        "data.features.text=FILE, or --features text=FILE)")
    heads = ["text"]
    for m in ("audio", "video"):
        if m in cfg.model.modalities:
            if m not in dims:
                raise DataError(f"{data.path}: model.modalities has {m!r} but the data has no {m} features "
                                f"(give data.features.{m}=FILE)")
            heads += [m, f"{m}_kd"]
    return heads


def build_stage1_head(cfg: ERCConfig, head: str, dims: dict[str, int], teacher=None):
    arch = get_arch("erc-utterance-head", task="erc")
    return arch.build(cfg, dims=dims, backbone=None, modality=STAGE1_HEADS[head], teacher=teacher,
                      kd=head.endswith("_kd"))


def run_stage1(cfg: ERCConfig, data: ERCData, seed: int, stage_dir: Path, *, resume: bool = False,
               progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Train the heads, write their features and test metrics; returns {head: {key: feature}}."""
    s1 = cfg.stage1
    dims = _dims(data)
    feats_dir = stage_dir / "features"
    heads = stage1_heads(cfg, data)
    if (stage_dir / DONE).exists():
        from ..encoders.features import load_features

        out = {}
        for h in heads:
            ids, X, _, _ = load_features(feats_dir / f"{h}.npz")
            out[h] = dict(zip(ids, X))
        return out
    features, metrics, teacher = {}, {}, None
    for i, head in enumerate(heads):
        torch.manual_seed(seed * 100 + i)
        model = build_stage1_head(cfg, head, dims, teacher=teacher if head.endswith("_kd") else None)
        inputs = [STAGE1_HEADS[head]] + (["text"] if head.endswith("_kd") else [])
        _fit(cfg, model, data, inputs, stage_dir / head, name=f"stage1-{head}", seed=seed + i, lr=s1.lr,
             weight_decay=s1.weight_decay, epochs=s1.epochs, early_stop=s1.early_stop, warmup_epochs=0.0,
             resume=resume, progress=progress)
        if head == "text":
            teacher = model
        preds = predict_split(cfg, model, data, "test", inputs)
        metrics[head] = erc_task(cfg).metrics(preds)
        features[head] = _features_of(model, cfg, data, inputs)
        keys = list(features[head])
        save_features(feats_dir / f"{head}.npz", keys, np.stack([features[head][k] for k in keys]),
                      {"stage1_head": head, "seed": seed})
        say(f"stage 1 {head}: test acc {metrics[head]['acc']:.4f}  weighted F1 {metrics[head]['weighted_f1']:.4f}")
    write_json(stage_dir / "metrics.json", metrics)
    write_json(stage_dir / "heads.json", {"heads": heads, "dims": dims})
    write_json(stage_dir / DONE, {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return features


def stage2_data(cfg: ERCConfig, data: ERCData, features: dict[str, dict[str, np.ndarray]] | None) -> ERCData:
    """What stage 2 reads: stage-1 features (text = the teacher's f) or, with stage 1 off, the raw features."""
    if features is None:
        missing = [k for k in stage2_inputs(cfg) if k not in _dims(data)]
        if missing:
            raise ConfigError(f"stage1.enabled=false, but stage 2 reads {', '.join(missing)}: give them in "
                              "data.features or set model.audio_input/video_input=raw")
        return data
    return with_features(data, features)


# ----------------------------------------------------------------------------- runs


def train_erc_seed(cfg: ERCConfig, data: ERCData, seed: int, run_dir: Path, *, resume: bool = False,
                   progress: bool = True, callbacks: Iterable[EpochCallback] = ()) -> dict[str, float]:
    sdir = seed_dir(run_dir, seed)
    if (sdir / DONE).exists():
        return json.loads((sdir / "test_metrics.json").read_text())
    sdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    feats = run_stage1(cfg, data, seed, sdir / "stage1", resume=resume, progress=progress) if cfg.stage1.enabled else None
    return train_stage2(cfg, stage2_data(cfg, data, feats), seed, sdir, resume=resume, progress=progress,
                        callbacks=callbacks, t0=t0)


def train_stage2(cfg: ERCConfig, data2: ERCData, seed: int, sdir: Path, *, resume: bool = False, progress: bool = True,
                 callbacks: Iterable[EpochCallback] = (), t0: float | None = None) -> dict[str, float]:
    """Stage 2 (cfg.model.arch) on stage-2 data, selected on valid; writes the seed's outputs and DONE."""
    t0 = time.perf_counter() if t0 is None else t0
    inputs = stage2_inputs(cfg)
    torch.manual_seed(seed)
    model = build_arch(cfg.model.arch, cfg, dims=_dims(data2), task="erc", option="model.arch")
    t = cfg.train
    result = _fit(cfg, model, data2, inputs, sdir, name="stage2", seed=seed, lr=t.lr, weight_decay=t.weight_decay,
                  epochs=t.epochs, early_stop=t.early_stop, warmup_epochs=t.warmup_epochs, resume=resume,
                  progress=progress, callbacks=callbacks)
    preds = predict_split(cfg, model, data2, "test", inputs)
    metrics = write_seed_outputs(sdir, erc_task(cfg), preds, model, result, t0)
    say(f"seed {seed} test: acc {metrics['acc']:.4f}  weighted F1 {metrics['weighted_f1']:.4f}")
    return metrics


def train_erc(cfg: ERCConfig, run_dir: str | Path, *, data: ERCData | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, callbacks: Iterable[EpochCallback] = ()) -> RunResult:
    """Both stages for every seed of `cfg.train.seeds` into `run_dir`; results mean ± std over seeds.

    As `deepmlf train`: unfinished work in `run_dir` needs `resume` (continue) or `overwrite`
    (start over), and a run dir holds one configuration (`prepare_erc_run_dir`)."""
    run_dir = Path(run_dir)
    get_arch(cfg.model.arch, task="erc", option="model.arch")  # an unknown arch fails before any data is read
    data = load_erc_data(cfg) if data is None else data
    _check_splits(data)
    cfg = resolve(cfg, data)
    task = erc_task(cfg)
    # One writer per run dir, as for `deepmlf train` (deepmlf.runlock; issue 9 item 2).
    with run_lock(run_dir, say=say):
        tree = cfg.model_dump()
        prepare_erc_run_dir(tree, run_dir, resume=resume, overwrite=overwrite)
        cfg_file = run_dir / "config.yaml"
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(cfg_file, yaml.safe_dump(tree, sort_keys=False))
        write_json(run_dir / "task.json", task.spec())
        write_json(run_dir / "speakers.json", {"mode": data.speaker_mode, "vocab": data.speaker_vocab})
        result = None
        for seed in cfg.train.seeds:
            train_erc_seed(cfg, data, seed, run_dir, resume=resume, progress=progress, callbacks=callbacks)
            result = aggregate(run_dir, task)
            write_results(result)
    if progress and result is not None:
        from ..cli.common import console

        console.print(results_table(result))
    return result


_ERC_RUN_FILES = ("config.yaml", "task.json", "speakers.json", "results.csv", "results.json")


def erc_unfinished_work(run_dir: Path, seeds: Iterable[int]) -> list[str]:
    """Seeds of `run_dir` with training logged (a history or last.pt, stage 1 or 2) and not finished."""
    found = []
    for seed in seeds:
        sdir = seed_dir(run_dir, seed)
        if not sdir.is_dir() or (sdir / DONE).exists():
            continue
        # A finished part (a DONE beside it or above it, e.g. stage1/DONE of `erc pretrain`) is reusable.
        logged = sorted("stage 2" if p.parent == sdir else p.parent.relative_to(sdir).as_posix() for p in sdir.rglob("*")
                        if p.name in ("history.jsonl", "last.pt")
                        and not any((d / DONE).exists() for d in p.parents if d != sdir and sdir in d.parents))
        if logged:
            found.append(f"seed {seed}: {', '.join(dict.fromkeys(logged))}")
    return found


def prepare_erc_run_dir(tree: dict[str, Any], run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """`run.guard_run_dir` for ERC runs: a run written with another configuration is refused, naming
    the keys (adding seeds is allowed)."""
    def check_config() -> None:
        cfg_file = run_dir / "config.yaml"
        if cfg_file.exists() and any(run_dir.glob("seed-*")):
            old = yaml.safe_load(cfg_file.read_text()) or {}
            diff = config_differences(old, tree, ignore=("train.seeds",))
            if diff:
                shown = ", ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
                raise ConfigError(f"{run_dir} holds an ERC run with another configuration ({shown}; config.yaml); "
                                  "use a new --out, --overwrite, or the same settings to continue it")

    guard_run_dir(run_dir, resume=resume, overwrite=overwrite,
                  start_over=lambda: remove_previous_run(run_dir, seed_dirs(run_dir).values(), _ERC_RUN_FILES),
                  unfinished=lambda: erc_unfinished_work(run_dir, tree["train"]["seeds"]), check_config=check_config)


def read_run_config(run_dir: str | Path) -> ERCConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DataError(f"{run_dir}: no config.yaml (not an ERC run directory)")
    return erc_config_from_dict(yaml.safe_load(path.read_text()), str(path))


def load_erc_run(run_dir: str | Path, seed: int | None = None, *, data: ERCData | None = None) -> tuple[ERCConfig, torch.nn.Module, ERCData]:
    """Rebuild a trained seed (stage-1 heads and stage 2) and the data it reads, ready to predict."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    seeds = sorted(int(p.name.split("-", 1)[1]) for p in run_dir.glob("seed-*") if (p / DONE).exists())
    if not seeds:
        raise DataError(f"{run_dir}: no finished seed (seed-*/DONE)")
    seed = seeds[0] if seed is None else seed
    if seed not in seeds:
        raise DataError(f"{run_dir}: seed {seed} is not finished; finished: {seeds}")
    sdir = seed_dir(run_dir, seed)
    data = load_erc_data(cfg) if data is None else data
    if list(data.classes) != list(cfg.data.classes):
        data = data.remap(cfg.data.classes)
    vocab = json.loads((run_dir / "speakers.json").read_text())["vocab"] if (run_dir / "speakers.json").exists() else None
    if vocab is not None:
        data.fixed_vocab = vocab  # the ids the speaker embedding was trained with
    feats = None
    if cfg.stage1.enabled:
        info = json.loads((sdir / "stage1" / "heads.json").read_text())
        feats, teacher = {}, None
        for head in info["heads"]:
            m = build_stage1_head(cfg, head, info["dims"], teacher=teacher if head.endswith("_kd") else None)
            m.load_trainable_state_dict(load_best(sdir / "stage1" / head / BEST)["model"])
            if head == "text":
                teacher = m
            feats[head] = _features_of(m, cfg, data, [STAGE1_HEADS[head]] + (["text"] if head.endswith("_kd") else []))
    data2 = stage2_data(cfg, data, feats)
    model = build_arch(cfg.model.arch, cfg, dims=_dims(data2), task="erc")
    model.load_trainable_state_dict(load_best(sdir / BEST)["model"])
    return cfg, model.eval(), data2


def evaluate_erc(run_dir: str | Path, *, seed: int | None = None, split: str = "test",
                 data: ERCData | None = None) -> tuple[dict[str, float], Predictions, ClassificationTask]:
    cfg, model, data2 = load_erc_run(run_dir, seed, data=data)
    preds = predict_split(cfg, model, data2, split, stage2_inputs(cfg))
    task = erc_task(cfg)
    return (task.score(preds, with_loss_terms=False) if preds.labels is not None else {}), preds, task
