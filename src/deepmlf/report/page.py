"""Assemble report.md: the metrics table, the plots and a few lines on how to read each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..io import write_text
from ..tasks import MSATask, Task
from . import plots
from .rundir import HEAD_LABELS, RunSummary


def format_metric(name: str, value: float, task: Task | None = None) -> str:
    """Accuracies and F1 in percent with 2 decimals, other values with 4; "–" when missing."""
    if value is None or not np.isfinite(value):
        return "–"
    return (task or MSATask()).format_value(name, value, digits=4)


def metric_columns(rows: list[dict[str, float]], task: Task | None = None) -> list[str]:
    """The task's table metrics present in `rows`, in its order, then names it does not know (sorted)."""
    task = task or MSATask()
    present = {k for r in rows for k in r}
    cols = [k for k in task.table_metrics if k in present]
    cols += sorted(k for k in present if k not in task.metric_names and k not in ("seed", "Loss"))
    return cols


def metrics_table(
    rows: list[tuple[str, dict[str, float]]], *, bold_best_among: int = 0, notes: list[str] | None = None,
    task: Task | None = None,
) -> str:
    """A Markdown table; the best value per column among the first `bold_best_among` rows is bold."""
    task = task or MSATask()
    cols = metric_columns([m for _, m in rows], task)
    best: dict[str, float] = {}
    if bold_best_among > 1:
        for c in cols:
            vals = [m[c] for _, m in rows[:bold_best_among] if c in m and np.isfinite(m[c])]
            if vals:
                best[c] = min(vals) if task.direction(c) == "min" else max(vals)
    header = "| model | " + " | ".join(cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    lines = [header, sep]
    for i, (name, m) in enumerate(rows):
        cells = []
        for c in cols:
            s = format_metric(c, m.get(c, float("nan")), task)
            if i < bold_best_among and c in best and m.get(c) == best[c]:
                s = f"**{s}**"
            cells.append(s)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def _scored_panels(summary: RunSummary) -> list[plots.Scored]:
    panels = []
    column = summary.task.prediction_column
    if summary.task.kind != "regression":  # one panel per model: its predicted class
        return [plots.Scored(m.name, m.predictions["label"].to_numpy(float), m.predictions[column].to_numpy(float))
                for m in summary.models if m.predictions is not None]
    if len(summary.models) == 1:
        # One model: show each of its heads, to see what each modality alone predicts.
        m = summary.models[0]
        df = m.predictions
        if df is not None:
            for col, label in HEAD_LABELS.items():
                if col in df.columns and df[col].notna().all():
                    panels.append(plots.Scored(label, df["label"].to_numpy(float), df[col].to_numpy(float)))
        return panels
    for m in summary.models:
        if m.predictions is not None:
            df = m.predictions
            panels.append(plots.Scored(m.name, df["label"].to_numpy(float), df[column].to_numpy(float)))
    return panels


def _config_value(cfg: dict[str, Any] | None, *path: str, default: Any = None) -> Any:
    node: Any = cfg or {}
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def _gate_drift_sentence(gates: list[dict], gate_kind: str) -> str:
    """How far the gates moved from their initial value (0.5 for sigmoid, 0 for tanh)."""
    init = {"sigmoid": 0.5, "tanh": 0.0}.get(gate_kind)
    values = [float(g[k]) for g in gates for k in ("gate_attn", "gate_ffw") if g.get(k) is not None]
    if init is None or not values:
        return f"Gate kind `{gate_kind}`: the branches are not gated."
    drift = max(abs(v - init) for v in values)
    text = f"Largest move of a gate from its initial value {init:g}: {drift:.3f}."
    if drift < 0.02:
        text += (" A scalar gate moves by at most about the learning rate per optimiser step, so in a short run "
                 "the gates stay near their start; the branches still act at that strength, and closing "
                 "them (g1 = 0) is the ablation that measures what they add.")
    return text


def _gate_cell(v: float | None) -> str:
    return "–" if v is None else f"{float(v):.4f}"


def _fmt_seconds(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


def _robustness_section(summary: RunSummary, out_dir: Path) -> list[str]:
    if summary.run_dir is None:
        return []
    from ..train.robustness import ROBUSTNESS_PNG, plot_robustness, read_robustness, robustness_markdown

    found = read_robustness(summary.run_dir)
    if found is None:
        return []
    frame, info = found
    md = ["## Robustness to missing modalities", "",
          f"`deepmlf robustness` on `{info['data']}` [{info['split']}]: each test sample loses the named "
          f"modality independently with the given probability (missing seed {info['missing_seed']}; text missing "
          "= empty transcript, audio/vision missing = one all-zero frame; docs/missing-modalities.md). "
          f"Seed means over seeds {info['seeds']}.", ""]
    if plot_robustness(frame, out_dir / ROBUSTNESS_PNG, metrics=info["metrics"]):
        md += [f"![metrics against the missing rate]({ROBUSTNESS_PNG})", ""]
    return md + robustness_markdown(frame, info) + [""]


def _per_class_f1(summary: RunSummary) -> list[str]:
    """Classification: F1 per class (×100) for every row of the metrics table."""
    classes = list(getattr(summary.task, "classes", ()))
    rows = list(summary.table_rows) if summary.table_rows else [(m.name, m.metrics) for m in summary.models]
    rows = [(n, m) for n, m in rows if any(f"f1_{c}" in m for c in classes)]
    if not classes or not rows:
        return []
    cell = lambda v: "–" if v is None or v != v else f"{100 * v:.2f}"  # noqa: E731
    out = ["## Per-class F1", "", "| model | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    out += [f"| {n} | " + " | ".join(cell(m.get(f"f1_{c}")) for c in classes) + " |" for n, m in rows]
    return out + ["", "F1 in %; – = the class is absent from both labels and predictions.", ""]


def render(summary: RunSummary, out_dir: Path) -> Path:
    """Write report.md and its PNGs into `out_dir`; returns the path of report.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = summary.config
    task = summary.task
    key_metric = str(_config_value(cfg, "train", "key_metric", default=task.default_key_metric))
    gate_kind = str(_config_value(cfg, "model", "gate", default="sigmoid"))
    md: list[str] = [f"# {summary.title}", ""]
    if summary.intro_md:
        md += [summary.intro_md.strip(), ""]

    # ------------------------------------------------------------------ metrics
    md += ["## Test metrics", ""]
    if summary.table_rows:
        rows = list(summary.table_rows)
        bold = 0
    else:
        rows = [(m.name, m.metrics) for m in summary.models]
        bold = len(rows)
    rows += [(f"*{r.name}*", r.metrics) for r in summary.references]
    md += [metrics_table(rows, bold_best_among=bold, task=task), ""]
    notes = [task.table_note()]
    if bold > 1:
        notes.append("Bold: best trained model per column.")
    if summary.references:
        notes.append("Rows in *italics* are reference rows: " + "; ".join(
            f"*{r.name}*: {r.note}" for r in summary.references if r.note) + ".")
    md += [" ".join(notes), ""]
    described = [m for m in summary.models if m.note]
    if described and len(summary.models) > 1:
        md += [f"- **{m.name}**: {m.note}" for m in described] + [""]

    if summary.timings:
        md += ["## Wall time", "", "| stage | time |", "|---|---:|"]
        md += [f"| {k} | {_fmt_seconds(v)} |" for k, v in summary.timings.items()]
        md += [""]

    # ------------------------------------------------------------------ curves
    curve_md: list[str] = []
    for m in summary.models:
        name = f"curves-{slug(m.name)}.png"
        if plots.plot_curves(m.history, out_dir / name, title=f"{m.name}: training", key_metric=key_metric,
                             direction=task.direction(key_metric)):
            curve_md += [f"### {m.name}", "", f"![{m.name} training curves]({name})", ""]
        if m.stage1_history:
            name1 = f"curves-{slug(m.name)}-stage1.png"
            if plots.plot_curves(m.stage1_history, out_dir / name1, title=f"{m.name}: stage 1 (AV encoder pre-training)"):
                curve_md += [f"### {m.name}, stage 1 (AV pre-training)", "", f"![stage 1 curves]({name1})", ""]
    if curve_md and task.kind == "classification":
        md += ["## Training curves", "",
               "Per epoch: the loss and its unweighted terms (cross-entropy, KD terms) on the training split "
               f"and the validation metrics; the dotted line marks the epoch selected by validation {key_metric}, "
               "whose weights are the ones tested.", ""] + curve_md
    elif curve_md:
        md += ["## Training curves", "",
               "Per epoch: the L1 loss of each head (the unweighted terms of eq. 14) on the training split "
               "and on the validation split, on one scale, and the LM cross-entropy when it was trained "
               f"(λ_LM > 0); the dotted line marks the epoch selected by validation {key_metric}, whose "
               "weights are the ones tested.", ""] + curve_md

    # ------------------------------------------------------------------ predictions
    panels = _scored_panels(summary)
    if task.kind == "regression" and plots.plot_scatter(panels, out_dir / "scatter.png", label_range=task.label_range):
        what = "each head of the model" if len(summary.models) == 1 else "each model"
        md += ["## Predictions vs labels", "",
               f"Test-split predictions of {what} against the true sentiment; points on the dashed line are exact.",
               "", "![predicted vs true](scatter.png)", ""]
    if plots.plot_confusion(panels, out_dir / "confusion.png", task=task):
        md += ["## Confusion matrices", "",
               "Rows: true class, columns: predicted class; numbers are counts, colour is the share of the "
               "true class. The diagonal is the class accuracy.", "", "![confusion matrices](confusion.png)", ""]
    if task.kind == "classification":
        md += _per_class_f1(summary)

    # ------------------------------------------------------------------ gates
    for m in summary.models:
        if not m.gates:
            continue
        name = f"gates-{slug(m.name)}.png"
        if plots.plot_gates(m.gates, out_dir / name, title=f"{m.name}: learned gates per MM block", gate_kind=gate_kind):
            md += [f"## Learned gates ({m.name})", "",
                   "How much each MM block lets through: g1 scales the cross-attention update of the fusion "
                   "tokens from the AV memory (eq. 9), g2 the FFW update (eq. 11). A gate near 0 means the "
                   "block is effectively off.", "", f"![gates]({name})", "",
                   "| layer | g1 (cross-attention) | g2 (FFW) |", "|---:|---:|---:|"]
            md += [f"| {int(g['layer'])} | {_gate_cell(g.get('gate_attn'))} | {_gate_cell(g.get('gate_ffw'))} |"
                   for g in m.gates]
            md += ["", _gate_drift_sentence(m.gates, gate_kind), ""]

    # ------------------------------------------------------------------ robustness (deepmlf robustness)
    md += _robustness_section(summary, out_dir)

    # ------------------------------------------------------------------ config
    if cfg:
        md += ["## Configuration", "", "<details><summary>resolved config (config.yaml)</summary>", "",
               "```yaml", yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", "", "</details>", ""]

    path = out_dir / "report.md"
    write_text(path, "\n".join(md))
    return path
