"""The demo's console table (rich) and its one-line verdict on whether fusion paid off."""

from __future__ import annotations

from rich.table import Table

from ..metrics import key_metric_names
from ..report.page import format_metric
from .probe_cache import FLOOR_ROWS

FUSED = "DeepMLF"
# Column headers of the probe's reference predictors (FLOOR_ROWS has the long names for the report).
SHORT_FLOOR_NAMES = {"oracle": "oracle", "text_only": "text oracle", "av_only": "AV oracle", "constant": "constant"}


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
    """Metrics as rows (MMSA names), models as columns, so it fits an 80-column terminal: the trained
    models first (best per row in bold), then the probe's reference predictors, dimmed."""
    rows = list(key_metric_names(dataset))
    table = Table(title="Test split of the fusion probe (accuracies and F1 in %)", title_justify="left",
                  header_style="bold", caption="dim columns: reference predictors of the probe, not trained models",
                  caption_justify="left")
    table.add_column("metric")
    for name in metrics:
        table.add_column(name, justify="right", style="green" if name == FUSED else None)
    refs = [k for k in FLOOR_ROWS if k in floor]
    for key in refs:
        table.add_column(SHORT_FLOOR_NAMES[key], justify="right", style="dim")
    for r in rows:
        vals = [m.get(r, float("nan")) for m in metrics.values()]
        finite = [v for v in vals if v == v]
        best = (min(finite) if r == "MAE" else max(finite)) if finite else None
        cells = [f"[bold]{format_metric(r, v)}[/]" if v == best else format_metric(r, v) for v in vals]
        cells += [format_metric(r, floor[k].get(r, float("nan"))) for k in refs]
        table.add_row(r, *cells)
    return table
