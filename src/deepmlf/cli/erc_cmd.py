"""`deepmlf erc ...`: emotion recognition in conversation (MAGTKD, seed 004).

    deepmlf erc data inspect PATH     dialogues, utterances, speakers, label histogram per split
    deepmlf erc extract               frozen text features (SmolLM2 shared prefix, MiniLM [MASK], local dirs)
    deepmlf erc pretrain | train      stage 1 | both stages per seed (the one loop, task erc)
    deepmlf erc evaluate | predict    metrics | per-utterance CSV of a trained seed
    deepmlf erc demo                  the dialogue probe (= deepmlf demo erc)
    deepmlf erc sweep SPEC            experiments/erc-*.yaml (Table 3, Fig. 5, switches)
    deepmlf erc extract-media         utterance audio/video features from clips (librosa/eGeMAPS, FER)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import app
from .common import console, friendly_errors

erc_app = typer.Typer(help="Emotion recognition in conversation (MAGTKD): data, features, training.",
                      no_args_is_help=True)
erc_data_app = typer.Typer(help="Inspect conversation data (MELD CSVs, COSMIC/DialogueRNN pickles, MERBench, MAGTKD).",
                           no_args_is_help=True)
app.add_typer(erc_app, name="erc")
erc_app.add_typer(erc_data_app, name="data")


@erc_data_app.command("inspect")
@friendly_errors
def data_inspect(
    path: Path = typer.Argument(..., help="A MELD/IEMOCAP CSV folder or file, a COSMIC/DialogueRNN/MAGTKD pickle, or MERBench label.npz."),
    source: str = typer.Option("auto", "--source", help="Format: auto, meld-csv, cosmic-pkl, dialoguernn-pkl, merbench-npz, magtkd-pkl."),
    label_order: Optional[str] = typer.Option(None, "--label-order", help="What the file's integer labels mean (a named order, e.g. meld-cosmic); default: the format's."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """What a conversation file holds: per split the dialogues, utterances, speakers, utterances per
    dialogue and the label histogram, plus what the loader repaired."""
    from ..data.erc import load_erc

    data = load_erc(path, source=source, label_order=label_order)
    summary = data.summary()
    if as_json:
        console.print_json(json.dumps(summary))
        return
    console.print(f"[bold]{path}[/] ({summary['source']}; speakers {summary['speaker_mode']}; "
                  f"classes: {', '.join(summary['classes'])})")
    table = Table()
    for col in ("split", "dialogues", "utterances", "speakers", "utt/dialogue min/mean/max", "features"):
        table.add_column(col, justify="right" if col not in ("split", "features") else "left")
    for name, s in summary["splits"].items():
        u = s["utterances_per_dialogue"]
        table.add_row(name, str(s["dialogues"]), str(s["utterances"]), str(s["speakers"]),
                      f"{u['min']}/{u['mean']}/{u['max']}", ", ".join(f"{m} {d}" for m, d in s["features"].items()) or "-")
    console.print(table)
    hist = Table(title="labels per split")
    hist.add_column("class")
    for name in summary["splits"]:
        hist.add_column(name, justify="right")
    for c in summary["classes"]:
        hist.add_row(c, *(str((s["labels"] or {}).get(c, "-")) for s in summary["splits"].values()))
    console.print(hist)
    for note in summary["notes"]:
        console.print(f"note: {note}")


def _split_metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    for col in ("split", "acc", "weighted F1", "macro F1"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for name, m in rows.items():
        table.add_row(name, *(f"{100 * m[k]:.2f}" for k in ("acc", "weighted_f1", "macro_f1")))
    return table


@erc_app.command("extract")
@friendly_errors
def extract(
    data: Path = typer.Option(..., "--data", help="Conversation file or folder (see `deepmlf erc data inspect`)."),
    out: Path = typer.Option(..., "--out", help="Feature file to write (.npz: ids, X, meta)."),
    encoder: str = typer.Option("smollm2-135m", "--encoder", help="smollm2-135m (causal, last position), minilm-l6 ([MASK]), or a local HF model dir (RoBERTa-large is the paper's)."),
    source: str = typer.Option("auto", "--source", help="Data format (auto detects)."),
    prompt: str = typer.Option("paper", "--prompt", help="paper: '... </s> For s: t Now s feels'; authors: '... </s> Now s feels'."),
    context: Optional[int] = typer.Option(None, "--context", help="Previous utterances in the prompt (default: the whole dialogue prefix)."),
    share_prefix: bool = typer.Option(True, "--share-prefix/--no-share-prefix", help="Causal LMs: one pass per dialogue (exactly equal to one pass per utterance)."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Masked encoders: left-truncate each input to this many tokens."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Causal LMs: also store the log-probability of one emotion word per class at the readout, and score it."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache folder (files named by the content hash of encoder + prompt + text)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Frozen text features for every utterance (MAGTKD eq. 1-3), offline."""
    import time

    import numpy as np

    from ..data.erc import load_erc
    from ..encoders import PromptSpec, load_text_encoder
    from ..encoders.features import extract_text_features, load_features
    from ..errors import ConfigError

    if prompt not in ("paper", "authors"):
        raise ConfigError(f"--prompt {prompt!r}: choose paper or authors")
    conv = load_erc(data, source=source)
    enc = load_text_encoder(encoder, prompt=PromptSpec(style=prompt, context=context), share_prefix=share_prefix,
                            max_tokens=max_tokens)
    t0 = time.perf_counter()
    path = extract_text_features(conv, enc, out=out, cache_dir=cache, zero_shot=zero_shot, progress=progress)
    ids, X, meta, extra = load_features(path)
    console.print(f"wrote {path}: {X.shape[0]} utterances × {X.shape[1]} ({meta.get('encoder')}, readout "
                  f"{meta.get('readout')}) in {time.perf_counter() - t0:.1f} s")
    if "zs" in extra:
        from ..tasks import ClassificationTask
        from ..train.evaluate import Predictions

        task = ClassificationTask(conv.classes)
        index = {k: i for i, k in enumerate(ids)}
        rows = {}
        for split, convs in conv.splits.items():
            keys = [f"{split}/{u}" for c in convs for u in c.utterance_ids]
            labels = np.array([y for c in convs for y in (c.labels or [])])
            if len(labels) != len(keys):
                continue
            zs = extra["zs"][[index[k] for k in keys]]
            rows[split] = task.metrics(Predictions(ids=keys, prediction=zs.argmax(1), labels=labels))
        console.print(_split_metrics_table("zero-shot: the LM's emotion word at the readout", rows))


def _cfg(config: Optional[Path], preset: Optional[str], data: Optional[Path], overrides: Optional[list[str]],
         features: Optional[list[str]]):
    from ..config_erc import load_erc_config

    sets = list(overrides or [])
    if data is not None:
        sets.append(f"data.path={data}")
    for item in features or []:
        mod, _, path = item.partition("=")
        sets.append(f"data.features.{mod}={path}")
    return load_erc_config(config, preset=preset, overrides=sets)


_CONFIG = typer.Option(None, "--config", help="YAML config (ERC tree: data, stage1, model, loss, train).")
_PRESET = typer.Option(None, "--preset", help="erc-meld, erc-iemocap, erc-demo or erc-authors.")
_DATA = typer.Option(None, "--data", help="Conversation file or folder (overrides data.path).")
_SET = typer.Option(None, "--set", help="Override KEY=VALUE (repeatable), e.g. --set model.gate=sigmoid_relu.")
_FEAT = typer.Option(None, "--features", help="MODALITY=FILE per-utterance features (repeatable): text=text.npz audio=a.npz.")


@erc_app.command("pretrain")
@friendly_errors
def pretrain(config: Optional[Path] = _CONFIG, preset: Optional[str] = _PRESET, data: Optional[Path] = _DATA,
             overrides: Optional[list[str]] = _SET, features: Optional[list[str]] = _FEAT,
             out: Path = typer.Option(..., "--out", help="Run directory."),
             progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Stage 1 only (text teacher head, audio/video students with and without KD) for every seed;
    `deepmlf erc train --out` on the same directory reuses it."""
    from ..train.erc_run import load_erc_data, resolve, run_stage1

    cfg = _cfg(config, preset, data, overrides, features)
    conv = load_erc_data(cfg)
    cfg = resolve(cfg, conv)
    for seed in cfg.train.seeds:
        run_stage1(cfg, conv, seed, out / f"seed-{seed}" / "stage1", progress=progress)
        console.print(f"stage 1 seed {seed}: {out / f'seed-{seed}' / 'stage1'}")


@erc_app.command("train")
@friendly_errors
def train(config: Optional[Path] = _CONFIG, preset: Optional[str] = _PRESET, data: Optional[Path] = _DATA,
          overrides: Optional[list[str]] = _SET, features: Optional[list[str]] = _FEAT,
          out: Path = typer.Option(..., "--out", help="Run directory."),
          resume: bool = typer.Option(False, "--resume", help="Continue unfinished seeds from last.pt."),
          overwrite: bool = typer.Option(False, "--overwrite", help="Start over: remove the run already in --out "
                                         "(seed-*, config, results) first. Without it (or --resume), unfinished work "
                                         "there is refused."),
          progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Stage 1 (if not done) and stage 2 for every seed; results.csv/json with mean ± std over seeds."""
    from ..train.erc_run import train_erc

    train_erc(_cfg(config, preset, data, overrides, features), out, resume=resume, overwrite=overwrite,
              progress=progress)


@erc_app.command("evaluate")
@friendly_errors
def evaluate(run: Path = typer.Argument(..., help="ERC run directory."),
             seed: Optional[int] = typer.Option(None, "--seed", help="Which seed (default: the first finished)."),
             split: str = typer.Option("test", "--split"),
             data: Optional[Path] = typer.Option(None, "--data", help="Other conversations (same format and features as the run's config)."),
             features: Optional[list[str]] = _FEAT) -> None:
    """Metrics of a trained seed on a split (selection was on valid; this only scores)."""
    from ..train.erc_run import evaluate_erc, load_erc_data, read_run_config

    conv = None
    if data is not None or features:
        cfg = read_run_config(run)
        tree = cfg.model_dump()
        if data is not None:
            tree["data"]["path"] = str(data)
        for item in features or []:
            mod, _, path = item.partition("=")
            tree["data"]["features"][mod] = path
        from ..config_erc import erc_config_from_dict

        conv = load_erc_data(erc_config_from_dict(tree))
    metrics, preds, task = evaluate_erc(run, seed=seed, split=split, data=conv)
    console.print(_split_metrics_table(f"{run} ({split})", {split: metrics}))
    per_class = Table(title="per-class F1")
    per_class.add_column("class")
    per_class.add_column("F1", justify="right")
    for c in task.classes:
        v = metrics.get(f"f1_{c}")
        per_class.add_row(c, "-" if v is None or v != v else f"{100 * v:.2f}")
    console.print(per_class)


@erc_app.command("predict")
@friendly_errors
def predict(run: Path = typer.Argument(..., help="ERC run directory."),
            out: Path = typer.Option(..., "--out", help="CSV: id, label, prediction, names, p_<class>."),
            seed: Optional[int] = typer.Option(None, "--seed"), split: str = typer.Option("test", "--split")) -> None:
    """Per-utterance predictions of a trained seed."""
    from ..io import write_text
    from ..train.erc_run import evaluate_erc

    _, preds, task = evaluate_erc(run, seed=seed, split=split)
    write_text(out, task.predictions_frame(preds).to_csv(index=False))
    console.print(f"wrote {out} ({len(preds)} utterances)")


@erc_app.command("demo")
@friendly_errors
def demo(out: Path = typer.Option(Path("runs/demo-erc"), "--out"), n: Optional[int] = typer.Option(None, "--n", help="Dialogues (default 600)."),
         fast: bool = typer.Option(False, "--fast"), overrides: Optional[list[str]] = _SET,
         progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """The dialogue-probe demo (= `deepmlf demo erc`)."""
    from ..demo.erc import run_demo_erc

    run_demo_erc(out, n=n, fast=fast, overrides=overrides, progress=progress, console=console)


@erc_app.command("sweep")
@friendly_errors
def sweep(spec: Path = typer.Argument(..., help="Sweep spec (experiments/erc-*.yaml)."),
          data: Optional[Path] = _DATA, features: Optional[list[str]] = _FEAT, overrides: Optional[list[str]] = _SET,
          out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: the spec's out)."),
          only: Optional[list[str]] = typer.Option(None, "--only", help="Run only these cells (repeatable)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and their overrides; train nothing."),
          progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Every cell of an ERC sweep spec as its own run directory, then one table (mean ± std over seeds)."""
    from ..experiments.erc_sweep import plan, run_erc_sweep

    extra = list(overrides or []) + ([f"data.path={data}"] if data else [])
    extra += [f"data.features.{m}={p}" for m, _, p in (f.partition("=") for f in features or [])]
    spec_obj, cells = plan(spec, extra)
    if dry_run:
        for cell, cfg in cells:
            console.print(f"{cell.name}: {cell.overrides or '{}'} (seeds {cfg.train.seeds})")
        return
    results = run_erc_sweep(spec, extra=extra, out=out, only=only, progress=progress)
    table = Table(title=f"{spec_obj.name}: test, mean ± std over seeds (selection on valid)")
    for col in ("cell", "acc", "weighted F1"):
        table.add_column(col, justify="left" if col == "cell" else "right")
    for name, r in results.items():
        table.add_row(name, *(f"{100 * r.mean[k]:.2f} ± {100 * r.std[k]:.2f}" for k in ("acc", "weighted_f1")))
    console.print(table)


@erc_app.command("extract-media")
@friendly_errors
def extract_media(
    data: Path = typer.Option(..., "--data", help="Conversation file or folder."),
    media_dir: Path = typer.Option(..., "--media-dir", help="Folder of clips named <utterance_id>.mp4 (MELD: dia{D}_utt{U}.mp4), searched recursively."),
    out_audio: Path = typer.Option(..., "--out-audio", help="Audio feature file (.npz)."),
    out_video: Path = typer.Option(..., "--out-video", help="Video feature file (.npz)."),
    feature_set: str = typer.Option("librosa-fer", "--feature-set", help="librosa-fer or egemaps-fer (deepmlf.features)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Per-clip cache folder."),
    source: str = typer.Option("auto", "--source"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Utterance-level audio/video features from media with the offline extractors (pooled over time)."""
    from ..data.erc import load_erc
    from ..encoders.media import extract_media_features

    a, v = extract_media_features(load_erc(data, source=source), media_dir, out_audio=out_audio, out_video=out_video,
                                  feature_set=feature_set, cache_dir=cache, progress=progress)
    console.print(f"wrote {a} and {v}")
