"""The report's PNG plots, drawn with matplotlib's object API (no pyplot state, Agg canvas).

Every function returns False (and writes nothing) when it has nothing to draw, so a report never
holds an empty plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..io import atomic_path

DPI = 110
# Loss terms of eq. 14 as history.jsonl names them, with the legend text.
L1_TERMS = {
    "task": "task head y_o",
    "f": "fusion head y_f",
    "av": "AV head y_av",
    "t": "text head y_t",
}
LM_TERM = ("lm", "LM cross-entropy")


@dataclass
class Scored:
    """One panel of a scatter / confusion plot: a model's (or head's) test predictions."""

    title: str
    labels: np.ndarray  # (N,) true sentiment
    preds: np.ndarray  # (N,) predicted sentiment


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _series(history: Sequence[dict[str, Any]], section: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, rec in enumerate(history):
        v = (rec.get(section) or {}).get(key)
        if isinstance(v, (int, float)) and np.isfinite(v):
            xs.append(float(rec.get("epoch", i + 1)))
            ys.append(float(v))
    return xs, ys


def plot_curves(history: Sequence[dict[str, Any]], path: Path, *, title: str, key_metric: str = "MAE",
                direction: str = "min") -> bool:
    """Per epoch: the L1 terms on train and on valid (same colours, shared y axis), the LM
    cross-entropy when it was computed; the epoch selected by `key_metric` is marked."""
    if not history:
        return False
    train = {k: _series(history, "train", k) for k in L1_TERMS}
    valid = {k: _series(history, "valid", k) for k in L1_TERMS}
    if not any(xs for xs, _ in valid.values()):
        # Histories without per-head terms (a single-head model): its validation MAE (MSA), else its "Loss".
        valid = {"task": _series(history, "valid", "MAE" if _series(history, "valid", "MAE")[0] else "Loss")}
    lm_train, lm_valid = _series(history, "train", LM_TERM[0]), _series(history, "valid", LM_TERM[0])
    has_lm = any(v != 0 for v in lm_train[1] + lm_valid[1])  # logged as 0 when λ_LM = 0 (not computed)
    if not any(xs for xs, _ in train.values()) and not any(xs for xs, _ in valid.values()):
        return False
    n_panels = 3 if has_lm else 2
    fig = Figure(figsize=(4.6 * n_panels, 3.7))
    axes = fig.subplots(1, n_panels)
    fig.suptitle(title, fontsize=12)
    best = _best_epoch(history, key_metric, direction)
    colours = dict(zip(L1_TERMS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    multi_head = any(xs for k, (xs, _) in train.items() if k != "task")
    labels = L1_TERMS if multi_head else {"task": "the model's prediction"}

    for ax, series, split in ((axes[0], train, "training"), (axes[1], valid, "validation")):
        for k, (xs, ys) in series.items():
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, color=colours[k], label=labels[k])
        if best is not None:
            ax.axvline(best, color="grey", ls=":", label=f"selected epoch ({key_metric})")
        ax.set_title(f"{split}: L1 loss per head" if multi_head else f"{split}: L1 loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean |prediction − label|")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    lo = min(ax.get_ylim()[0] for ax in axes[:2])
    hi = max(ax.get_ylim()[1] for ax in axes[:2])
    for ax in axes[:2]:
        ax.set_ylim(lo, hi)  # one scale: the train/valid gap reads directly

    if has_lm:
        ax = axes[2]
        for (xs, ys), split, style in ((lm_train, "train", "-"), (lm_valid, "valid", "--")):
            if xs:
                ax.plot(xs, ys, ls=style, marker="o", ms=3, color="tab:purple", label=f"{split} LM cross-entropy")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ys = lm_train[1] + lm_valid[1]
        mid, span = (max(ys) + min(ys)) / 2, max(max(ys) - min(ys), 0.05 * abs(max(ys)) + 1e-3)
        ax.set_ylim(mid - 0.6 * span, mid + 0.6 * span)  # a flat curve stays flat, not magnified noise
        ax.set_title("LM loss on the transcripts")
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, path)
    return True


def _best_epoch(history: Sequence[dict[str, Any]], key_metric: str, direction: str) -> float | None:
    xs, ys = _series(history, "valid", key_metric)
    if not xs:
        return None
    i = int(np.argmax(ys) if direction == "max" else np.argmin(ys))
    return xs[i]


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return (n + cols - 1) // cols, cols


def plot_scatter(panels: Sequence[Scored], path: Path, *, label_range: float) -> bool:
    """Predicted vs true sentiment (labels in [-label_range, label_range]), one panel per model/head,
    with the y = x line."""
    panels = [p for p in panels if len(p.labels)]
    if not panels:
        return False
    r = label_range
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(3.9 * cols, 3.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    for ax, p in zip(axes, panels):
        y, yhat = np.asarray(p.labels, float), np.asarray(p.preds, float)
        # MOSI-style labels sit on a 1/3 grid: a little jitter keeps overlapping points visible.
        jitter = rng.uniform(-0.04 * r, 0.04 * r, size=y.shape)
        ax.scatter(y + jitter, yhat, s=10, alpha=0.55, edgecolors="none")
        ax.plot([-r, r], [-r, r], color="black", lw=1, ls="--", label="y = x")
        mae = float(np.mean(np.abs(yhat - y)))
        corr = float(np.corrcoef(y, yhat)[0, 1]) if np.std(y) > 0 and np.std(yhat) > 0 else float("nan")
        ax.set_title(f"{p.title}\nMAE {mae:.3f}, Corr {corr:.3f}", fontsize=10)
        ax.set_xlim(-r * 1.1, r * 1.1)
        ax.set_ylim(-r * 1.1, r * 1.1)
        ax.set_aspect("equal")
        ax.set_xlabel("true sentiment (jittered)")
        ax.set_ylabel("predicted sentiment")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"Test predictions vs labels (N = {len(panels[0].labels)})", fontsize=12)
    _save(fig, path)
    return True


def plot_confusion(panels: Sequence[Scored], path: Path, *, task: Any) -> bool:
    """Confusion matrices of the task's classes (rows true, columns predicted), counts annotated.

    `task.classes_of(values)` gives class indices and names (MSA: MMSA's Mult_acc_7 / SIMS
    5-class bins; classification: the classes); `task.class_accuracy_name` names the trace."""
    panels = [p for p in panels if len(p.labels)]
    if not panels:
        return False
    rows, cols = _grid(len(panels))
    fig = Figure(figsize=(4.3 * cols, 4.1 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    acc_name = task.class_accuracy_name
    for ax, p in zip(axes, panels):
        t, names = task.classes_of(p.labels)
        q, _ = task.classes_of(p.preds)
        k = len(names)
        cm = np.zeros((k, k), dtype=int)
        ok = (q >= 0) & (t >= 0)  # a classifier's -1 (non-finite logits) is no class: off the matrix, still wrong
        np.add.at(cm, (t[ok], q[ok]), 1)
        # Colour = share of the true class's row, so rare classes are as readable as common ones.
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 3 else 0, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        acc = float(np.trace(cm) / max(len(t), 1))
        ax.set_title(f"{p.title}\n{acc_name} {100 * acc:.1f}%", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"Confusion matrices, {task.classes_title}", fontsize=12)
    _save(fig, path)
    return True


def plot_gates(gates: Sequence[dict[str, float]], path: Path, *, title: str, gate_kind: str = "sigmoid") -> bool:
    """Learned gate values per MM layer: g1 on cross-attention (eq. 9), g2 on the FFW (eq. 11)."""
    gates = [g for g in gates if g.get("gate_attn") is not None or g.get("gate_ffw") is not None]
    if not gates:
        return False
    layers = [int(g["layer"]) for g in gates]
    x = np.arange(len(layers))
    fig = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(layers)) + 3.2, 3.8))
    ax = fig.subplots()
    w = 0.38
    a = [_gate(g, "gate_attn") for g in gates]
    f = [_gate(g, "gate_ffw") for g in gates]  # nan when the block has no FFW (ffw: off)
    fn = {"sigmoid": "σ", "tanh": "tanh"}.get(gate_kind, "")
    lab1 = f"g1 = {fn}(a1), cross-attention" if fn else "g1, cross-attention"
    lab2 = f"g2 = {fn}(a2), FFW" if fn else "g2, FFW"
    b1 = ax.bar(x - w / 2, a, w, label=lab1)
    ax.bar_label(b1, fmt="%.3f", fontsize=8)
    if not all(np.isnan(f)):
        b2 = ax.bar(x + w / 2, f, w, label=lab2)
        ax.bar_label(b2, fmt="%.3f", fontsize=8)
    init = {"sigmoid": 0.5, "tanh": 0.0}.get(gate_kind)
    if init is not None:
        ax.axhline(init, color="grey", ls=":", label=f"value at init ({init:g})")
    lo = min(0.0, np.nanmin(a + f) - 0.1)
    ax.set_ylim(lo, max(1.0, np.nanmax(a + f) + 0.1))
    ax.set_xticks(x, [str(i) for i in layers])
    ax.set_xlabel("MM block after decoder layer (0-based)")
    ax.set_ylabel("gate value")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    _save(fig, path)
    return True


def _gate(g: dict, key: str) -> float:
    v = g.get(key)
    return float("nan") if v is None else float(v)
