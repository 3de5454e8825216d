"""`deepmlf demo erc`: MAGTKD on the dialogue probe (deepmlf.data.erc.probe), no data, no download.

Stages: generate the probe -> text features of every line with a real frozen encoder
(all-MiniLM-L6-v2 [MASK] readout; SmolLM2-135M when MiniLM is not installed) -> stage 1 once
(text teacher, audio/video students with and without KD) -> stage 2 variants on the ONE loop
(Concat, MAGT, MAGT without the speaker embedding) -> the exact Bayes oracle -> one table.
Every model is selected on the valid split; the table is the test split.

The text prompt reads only the line (context 0, no name): who said it reaches a model only through
the speaker ids, and earlier lines only through the dialogue model — which is what the probe tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = "runs/demo-erc"


def _text_features(data, console) -> tuple[dict[str, np.ndarray], str]:
    """One vector per distinct line (the prompt has no context and no name), mapped to every utterance."""
    from ..encoders import PromptSpec, load_text_encoder
    from ..errors import BackboneError

    lines = sorted({t for convs in data.splits.values() for c in convs for t in c.texts})
    try:
        enc = load_text_encoder("minilm-l6", prompt=PromptSpec(context=0))
    except BackboneError:
        enc = load_text_encoder("smollm2-135m", prompt=PromptSpec(context=0), share_prefix=False)
    h, _ = enc.encode_dialogue(["Speaker"] * len(lines), lines)
    table = dict(zip(lines, h.float().numpy()))
    out = {}
    for split, convs in data.splits.items():
        for c in convs:
            c.features["text"] = np.stack([table[t] for t in c.texts]).astype(np.float32)
    console.print(f"text features: {len(lines)} distinct lines through {enc.name} ({enc.kind}, d={enc.dim})")
    return out, enc.name


def _oracle_metrics(data, lik, spec, task) -> dict[str, float]:
    from ..data.erc.probe import oracle_posteriors
    from ..train.evaluate import Predictions

    post = oracle_posteriors(data, lik, spec)
    ids = [f"test/{u}" for c in data["test"] for u in c.utterance_ids]
    labels = np.array([y for c in data["test"] for y in c.labels])
    probs = np.stack([post[i] for i in ids])
    preds = Predictions(ids=ids, prediction=probs.argmax(1), labels=labels, probs=probs)
    return task.metrics(preds)


def run_demo_erc(out_dir: str | Path = DEFAULT_OUT, *, n: int | None = None, fast: bool = False,
                 overrides: list[str] | None = None, progress: bool = True, console: Any = None) -> dict[str, Any]:
    import torch
    from rich.console import Console

    console = console or Console()
    out = Path(out_dir)
    t0 = time.perf_counter()
    # The probe's models are tiny: a second thread only adds OpenMP spin-waits on a shared 2-core box.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(out, n=n, fast=fast, overrides=overrides, progress=progress, console=console, t0=t0)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, *, n, fast, overrides, progress, console, t0) -> dict[str, Any]:
    from rich.table import Table

    from ..config_erc import erc_config_from_dict, load_erc_config
    from ..data.erc.probe import ProbeSpec, make_probe
    from ..io import write_json, write_text
    from ..train.erc_run import erc_task, resolve, run_stage1, stage2_data, train_stage2

    spec = ProbeSpec(n_dialogues=n or (300 if fast else 600))
    data, lik = make_probe(spec)
    console.print(f"dialogue probe: {spec.n_dialogues} dialogues, "
                  f"{sum(len(c) for cs in data.splits.values() for c in cs)} utterances, classes {', '.join(data.classes)}")
    _, encoder = _text_features(data, console)
    cfg = load_erc_config(preset="erc-demo", overrides=list(overrides or []) + (["train.epochs=12"] if fast else []))
    cfg = resolve(cfg, data)
    task = erc_task(cfg)
    seed = cfg.train.seeds[0]
    feats = run_stage1(cfg, data, seed, out / "stage1", progress=progress)
    s1 = json.loads((out / "stage1" / "metrics.json").read_text())
    rows: list[tuple[str, str, dict[str, float]]] = [
        ("text only", "stage-1 teacher head on T (utterance level)", s1["text"]),
        ("audio", "stage-1 audio student, CE only (A)", s1["audio"]),
        ("audio + KD", "stage-1 audio student, CE + L_s + L_f (A_KD)", s1["audio_kd"]),
    ]
    data2 = stage2_data(cfg, data, feats)
    variants = [
        ("Concat", "Fig. 3 on T + A_KD + V_KD (no dialogue context)", {"arch": "concat"}),
        ("MAGT", "T + A_KD + V_KD, speaker + position embeddings", {}),
        ("MAGT w/o speaker emb", "as MAGT, no speaker embedding", {"speaker_embedding": False}),
    ]
    for name, what, change in variants:
        tree = cfg.model_dump()
        tree["model"].update(change)
        vcfg = erc_config_from_dict(tree, f"demo variant {name}")
        slug = name.lower().replace(" ", "-").replace("/", "")
        metrics = train_stage2(vcfg, data2, seed, out / slug / f"seed-{seed}", progress=progress)
        rows.append((name, what, metrics))
    rows.append(("Bayes oracle", "exact posterior: forward-backward per speaker chain, T + A + V", _oracle_metrics(data, lik, spec, task)))
    wall = time.perf_counter() - t0

    table = Table(title=f"MAGTKD on the dialogue probe (test split, {len(data['test'])} dialogues; selection on valid)")
    for col in ("model", "acc", "weighted F1", "what"):
        table.add_column(col, justify="right" if col in ("acc", "weighted F1") else "left")
    for name, what, m in rows:
        table.add_row(name, f"{100 * m['acc']:.2f}", f"{100 * m['weighted_f1']:.2f}", what)
    console.print(table)
    by = {name: m for name, _, m in rows}
    beats = by["MAGT"]["weighted_f1"] > max(by["text only"]["weighted_f1"], by["MAGT w/o speaker emb"]["weighted_f1"])
    verdict = ("MAGT beats text-only and MAGT without speaker embedding" if beats else
               "MAGT does NOT beat both text-only and the no-speaker variant on this run")
    console.print(f"{verdict}. Wall time {wall:.0f} s.")
    md = ["| model | acc | weighted F1 | what |", "|---|---:|---:|---|"]
    md += [f"| {name} | {100 * m['acc']:.2f} | {100 * m['weighted_f1']:.2f} | {what} |" for name, what, m in rows]
    write_text(out / "results.md", "\n".join(md) + f"\n\n{verdict}. Text encoder: {encoder}. Wall time {wall:.0f} s.\n")
    result = {"rows": {name: m for name, _, m in rows}, "verdict": beats, "wall_s": round(wall, 1), "encoder": encoder,
              "n_dialogues": spec.n_dialogues}
    write_json(out / "results.json", result)
    return result
