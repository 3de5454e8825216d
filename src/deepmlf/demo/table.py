"""The demo's console table (rich) and its one-line verdict on whether fusion paid off."""

from __future__ import annotations

from rich.table import Table

from ..metrics import key_metric_names
from ..report.page import format_metric
from .probe_cache import FLOOR_ROWS

FUSED = "DeepMLF"


def fusion_verdict(metrics: dict[str, dict[str, float]]) -> tuple[bool, str]:
    """(DeepMLF beats every other model on both MAE and Corr, a sentence saying by how much)."""
    fused = metrics[FUSED]
    others = {k: m for k, m in metrics.items() if k != FUSED}
    beats = all(fused["MAE"] < m["MAE"] and fused["Corr"] > m["Corr"] for m in others.values())
    parts = ", ".join(f"{k} {m['MAE']:.3f}" for k, m in others.items())
    if beats:
        best = min(others.values(), key=lambda m: m["MAE"])
        gain = 100 * (1 - fused["MAE"] / best["MAE"])
        return True, (
            f"DeepMLF beats both unimodal references: test MAE {fused['MAE']:.3f} vs {parts} "
            f"({gain:.0f}% lower than the better one), Corr {fused['Corr']:.3f}."
        )
    return False, (
        f"DeepMLF does NOT beat both unimodal references (test MAE {fused['MAE']:.3f} vs {parts}; "
        f"Corr {fused['Corr']:.3f} vs " + ", ".join(f"{k} {m['Corr']:.3f}" for k, m in others.items()) + "). "
        "Check the gates and curves in the report: closed gates or a flat fusion loss mean the "
        "fusion tokens are not using the AV memory."
    )


def comparison_table(
    metrics: dict[str, dict[str, float]], floor: dict[str, dict[str, float]], *, dataset: str
) -> Table:
    """Trained models first (best per column in bold), then the probe's reference predictors, dimmed."""
    cols = list(key_metric_names(dataset))
    table = Table(title="Test split of the fusion probe (accuracies/F1 in %, MMSA metric names)",
                  title_justify="left", header_style="bold")
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    best = {}
    for c in cols:
        vals = [m[c] for m in metrics.values() if c in m]
        if vals:
            best[c] = min(vals) if c == "MAE" else max(vals)
    for name, m in metrics.items():
        cells = []
        for c in cols:
            s = format_metric(c, m.get(c, float("nan")))
            cells.append(f"[bold]{s}[/]" if m.get(c) == best.get(c) else s)
        table.add_row(name, *cells, style="green" if name == FUSED else None)
    table.add_section()
    for key, label in FLOOR_ROWS.items():
        if key in floor:
            table.add_row(label, *(format_metric(c, floor[key].get(c, float("nan"))) for c in cols), style="dim")
    return table
