"""The paper's sweep plots, drawn from an aggregated `ResultsTable` (matplotlib object API, Agg, PNG).

- metric vs number of fusion tokens n_f (Fig. 3) when the runs differ in `model.n_fusion`;
- metric vs fusion depth, the number of MM blocks (Tables 6, 7), when they differ in `model.mm_layers`;
- per-layer gate values g1 (GCA, eq. 9) and g2 (FFW, eq. 10) from each seed's gates.json.

Points are means over finished seeds with ± std (ddof=0) error bars. Runs that also differ in other
keys (e.g. the backbone in Table 7, or the preset when Fig. 3 compares LMs) are drawn as
separate lines.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io import atomic_path
from .. import rundir
from .results import ResultsTable, format_key_value

DPI = 110
ARROW = {"max": "↑", "min": "↓"}


def _save(fig: Figure, path: Path, *, legend_from=None) -> Path:
    """Save as PNG; a legend (from one axes' lines) goes below the panels so it never hides data."""
    FigureCanvasAgg(fig)
    bottom = 0.0
    if legend_from is not None:
        handles, labels = legend_from.get_legend_handles_labels()
        if handles:
            ncol = min(3, len(handles))
            n_rows = -(-len(handles) // ncol)
            fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
            bottom = min(0.5, (0.28 * n_rows + 0.1) / fig.get_figheight())
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _scale(table: ResultsTable, metric: str, v: float) -> float:
    return 100 * v if table.is_percentage(metric) else v


def _group_label(table: ResultsTable, keys: list[str], config: dict[str, Any] | None) -> str:
    if not keys:
        return "DeepMLF"
    parts = [f"{k.rsplit('.', 1)[-1]}={format_key_value((config or {}).get(k))}" for k in keys]
    label = ", ".join(parts)
    return label if len(label) <= 60 else label[:57] + "..."


def plot_metrics_vs(
    table: ResultsTable,
    key: str,
    path: Path,
    *,
    x_of: Callable[[Any], float],
    xlabel: str,
    point_label: Callable[[Any], str] | None = None,
    title: str,
) -> Path | None:
    """One panel per metric: mean ± std against x_of(config[key]); one line per setting of the other varying keys."""
    rows = [r for r in table.rows if r.config is not None and r.config.get(key) is not None]
    if len({x_of(r.config[key]) for r in rows}) < 2 or not table.metrics:
        return None  # a plot needs at least two x positions (Table 7 varies layers but may keep the depth)
    others = [k for k in table.varying if k != key]
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(_group_label(table, others, r.config), []).append(r)

    n = len(table.metrics)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows + 0.4))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    for ax, m in zip(axes, table.metrics):
        for label, members in groups.items():
            pts = sorted(
                (x_of(r.config[key]), _scale(table, m, r.mean[m]),
                 0.0 if math.isnan(r.std.get(m, math.nan)) else _scale(table, m, r.std[m]), r)
                for r in members
                if m in r.mean
            )
            if not pts:
                continue
            xs, ys, es = (np.array([p[i] for p in pts], dtype=float) for i in range(3))
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
            if point_label is not None:
                for x, y, _, r in pts:
                    ax.annotate(point_label(r.config[key]), (x, y), textcoords="offset points", xytext=(0, 6),
                                ha="center", fontsize=7)
        unit = " (%)" if table.is_percentage(m) else ""
        ax.set_title(f"{m} {ARROW[table.direction(m)]}", fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(m + unit, fontsize=8)
        xs_all = sorted({x_of(r.config[key]) for r in rows})
        ax.set_xticks(xs_all)
        ax.ticklabel_format(axis="y", useOffset=False)  # plain values: "+5e-1" offsets confuse readers
        ax.margins(x=0.08, y=0.18 if point_label is not None else 0.08)  # room for the layer labels
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path, legend_from=axes[0] if len(groups) > 1 else None)


def plot_gates(table: ResultsTable, path: Path) -> Path | None:
    """Gate value per MM layer (mean ± std over seeds), one line per run; GCA gate and FFW gate side by side."""
    series = []
    for r in table.rows:
        gates = rundir.gate_values(r.run_dir)
        if not gates:
            continue
        layers = sorted({int(g["layer"]) for seed_gates in gates.values() for g in seed_gates})
        stats = {}
        for kind in ("gate_attn", "gate_ffw"):
            per_layer = []
            for layer in layers:
                vals = [float(g[kind]) for sg in gates.values() for g in sg if int(g["layer"]) == layer and kind in g]
                per_layer.append((np.mean(vals), np.std(vals) if len(vals) > 1 else 0.0) if vals else (np.nan, 0.0))
            stats[kind] = per_layer
        series.append((r.label, layers, stats, len(gates)))
    if not series:
        return None
    fig = Figure(figsize=(10, 3.8 + 0.28 * -(-len(series) // 3)))
    titles = {"gate_attn": "GCA gate g1 (eq. 9)", "gate_ffw": "FFW gate g2 (eq. 10)"}
    for i, kind in enumerate(("gate_attn", "gate_ffw")):
        ax = fig.add_subplot(1, 2, i + 1)
        for label, layers, stats, n_seeds in series:
            ys = np.array([s[0] for s in stats[kind]], dtype=float)
            es = np.array([s[1] for s in stats[kind]], dtype=float)
            ax.errorbar(layers, ys, yerr=es, marker="o", capsize=3, label=f"{label} ({n_seeds} seeds)")
        ax.set_title(titles[kind], fontsize=10)
        ax.set_xlabel("decoder layer before the MM block (0-based)")
        ax.set_ylabel("gate value")
        ax.set_xticks(sorted({l for _, layers, _, _ in series for l in layers}))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    fig.suptitle("Learned gate values per MM layer (best checkpoint), mean ± std over seeds", fontsize=11)
    return _save(fig, path, legend_from=fig.axes[0])


def _layer_span(layers: list[int]) -> str:
    layers = sorted(layers)
    if len(layers) == 1:
        return str(layers[0])
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}:{layers[-1]}"
    return "-".join(str(x) for x in layers)


def write_plots(table: ResultsTable, out_dir: Path) -> list[Path]:
    """Every plot that applies to this table; returns the written PNGs."""
    out: list[Path] = []
    if "model.n_fusion" in table.varying:
        p = plot_metrics_vs(
            table, "model.n_fusion", Path(out_dir) / "metrics_vs_n_fusion.png",
            x_of=float, xlabel="fusion tokens n_f",
            title="Impact of the number of fusion tokens n_f (cf. paper Fig. 3)",
        )
        out += [p] if p else []
    if "model.mm_layers" in table.varying:
        p = plot_metrics_vs(
            table, "model.mm_layers", Path(out_dir) / "metrics_vs_fusion_depth.png",
            x_of=lambda v: float(len(v)), xlabel="MM blocks (fusion depth)",
            point_label=_layer_span,
            title="Fusion depth: MM blocks after layers (0-based) (cf. paper Tables 6, 7)",
        )
        out += [p] if p else []
    p = plot_gates(table, Path(out_dir) / "gates.png")
    out += [p] if p else []
    return out
