"""The demo's console table (rich) and its one-line verdict on whether fusion paid off."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from ..metrics import key_metric_names
from ..report.page import format_metric
from .probe_cache import FLOOR_ROWS

FUSED = "DeepMLF"
# Column headers of the probe's reference predictors (FLOOR_ROWS has the long names for the report).
# Columns after the trained models: DeepMLF's fusion head alone, DeepMLF with cross-attention off.
EXTRA_COLUMNS = {"y_f": "y_f alone", "ablation": "xattn off"}
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


def fusion_head_sentence(fusion_head: dict[str, float] | None, metrics: dict[str, dict[str, float]]) -> str:
    """Whether DeepMLF's fusion head y_f, reading only the fusion tokens, beats both unimodal references."""
    if fusion_head is None:
        return ""
    refs = {k: m for k, m in metrics.items() if k != FUSED}
    parts = ", ".join(f"{k} {m['MAE']:.3f}" for k, m in refs.items())
    beats = all(fusion_head["MAE"] < m["MAE"] for m in refs.values())
    return (f"The fusion head y_f alone (fusion tokens only) scores test MAE {fusion_head['MAE']:.3f} vs {parts}: "
            + ("the deep path itself fuses the modalities." if beats else
               "it does NOT beat both unimodal references, so the fusing happens in the task head."))


def ablation_sentence(fused: dict[str, float], ablated: dict[str, float] | None) -> str:
    """What switching off the MM blocks' cross-attention at test time does to DeepMLF's MAE."""
    if ablated is None:
        return ""
    delta = ablated["MAE"] - fused["MAE"]
    if delta > 0:
        return (f"With its cross-attention switched off at test time DeepMLF's MAE rises from {fused['MAE']:.3f} "
                f"to {ablated['MAE']:.3f}: the AV memory read by the fusion tokens carries part of the gain.")
    return (f"With its cross-attention switched off at test time DeepMLF's MAE is {ablated['MAE']:.3f} "
            f"(vs {fused['MAE']:.3f}): the gain comes from the task head reading x_tK and z̄, not from the "
            "fusion tokens.")


def comparison_table(
    metrics: dict[str, dict[str, float]], floor: dict[str, dict[str, float]], *, dataset: str,
    extra: dict[str, dict[str, float] | None] | None = None,
) -> Group:
    """Two tables with metrics as rows (MMSA names), so each fits an 80-column terminal: the trained
    models (best per row in bold) and the `extra` columns (DeepMLF's y_f alone, DeepMLF with
    cross-attention off; not in the bold contest), then the probe's reference predictors."""
    rows = list(key_metric_names(dataset))
    extra = {k: v for k, v in (extra or {}).items() if v is not None}
    trained = _metric_table("Test split of the fusion probe: trained models (accuracies and F1 in %)")
    for name in metrics:
        trained.add_column(name, justify="right", style="green" if name == FUSED else None, no_wrap=True)
    for name in extra:
        trained.add_column(name, justify="right", style="italic", no_wrap=True)
    refs = [k for k in FLOOR_ROWS if k in floor]
    reference = _metric_table("Reference predictors of the probe (computed from its hidden cues, not trained)")
    for key in refs:
        reference.add_column(SHORT_FLOOR_NAMES[key], justify="right", no_wrap=True)
    for r in rows:
        vals = [m.get(r, float("nan")) for m in metrics.values()]
        finite = [v for v in vals if v == v]
        best = (min(finite) if r == "MAE" else max(finite)) if finite else None
        trained.add_row(r, *(f"[bold]{format_metric(r, v)}[/]" if v == best else format_metric(r, v) for v in vals),
                        *(format_metric(r, m.get(r, float("nan"))) for m in extra.values()))
        reference.add_row(r, *(format_metric(r, floor[k].get(r, float("nan"))) for k in refs))
    return Group(trained, reference) if refs else Group(trained)


def _metric_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("metric", no_wrap=True, min_width=13)
    return table
