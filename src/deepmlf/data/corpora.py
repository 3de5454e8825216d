"""The MSA corpora deepmlf knows, and which one a file is (DESIGN.md §3, §5).

The file, not a default, tells which dataset it is. Three kinds of evidence, strongest first:
  1. the label range: a score outside [-1, 1] rules out CH-SIMS and CH-SIMS v2;
  2. `regression_labels_T/A/V` (CH-SIMS's unimodal annotations, also in v2) rule out MOSI/MOSEI;
  3. the feature dims of the standard MMSA features name one corpus (MOSI 5/20, MOSEI 74/35,
     SIMS 33/709, SIMSv2 25/177).
Weaker evidence that disagrees with stronger evidence is set aside (and said). `infer_dataset`
serves both `deepmlf data inspect` and training; `check_dataset` refuses a named dataset that the
file contradicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError
from ..metrics import METRIC_SET

# The corpora and their family, as deepmlf.metrics lists them: "mosi" (labels in [-3, 3], metricsTop's
# MOSI/MOSEI metrics) or "sims" ([-1, 1], its SIMS metrics). The label range follows from the family.
DATASETS = tuple(METRIC_SET)
FAMILY = METRIC_SET
LABEL_RANGES: dict[str, tuple[float, float]] = {
    d: (-1.0, 1.0) if family == "sims" else (-3.0, 3.0) for d, family in FAMILY.items()
}
NAMES = {"mosi": "CMU-MOSI", "mosei": "CMU-MOSEI", "sims": "CH-SIMS", "simsv2": "CH-SIMS v2"}
# (audio dim, vision dim) of the standard MMSA features: COVAREP/Facet (MOSI, MOSEI), Librosa/OpenFace
# (SIMS), and the v2 release's 25-d audio / 177-d vision (unaligned: 925 x 25 and 232 x 177 frames).
STANDARD_DIMS: dict[str, tuple[int, int]] = {"mosi": (5, 20), "mosei": (74, 35), "sims": (33, 709), "simsv2": (25, 177)}
UNIMODAL_LABEL_KEYS = ("regression_labels_T", "regression_labels_A", "regression_labels_V")
MOSI_LIKE = "mosi/mosei-like"  # what an unidentified file with [-3, 3] labels is reported as
LABEL_SLACK = 1e-6  # float32 round-off on labels stored as float64 averages


@dataclass(frozen=True)
class DatasetInference:
    """What a file shows about its corpus."""

    candidates: tuple[str, ...]  # corpora consistent with the evidence, in DATASETS order
    evidence: tuple[str, ...]  # one phrase per fact that narrowed them (what a note or error says)
    set_aside: tuple[str, ...] = ()  # weaker facts that disagreed with stronger ones

    @property
    def dataset(self) -> str | None:
        """The one corpus the file shows, or None."""
        return self.candidates[0] if len(self.candidates) == 1 else None

    @property
    def family(self) -> str | None:
        """"mosi" or "sims" when every candidate shares one label range and metric set, else None."""
        families = {FAMILY[d] for d in self.candidates}
        return families.pop() if len(families) == 1 else None

    def describe(self) -> str:
        return "; ".join(self.evidence) if self.evidence else "nothing identifies it"


def infer_dataset(*, audio_dim: int, vision_dim: int, label_min: float | None, label_max: float | None,
                  has_unimodal_labels: bool) -> DatasetInference:
    """The corpora a file can be, from its feature dims, unimodal label keys and label range.

    label_min/label_max: over every labelled split (None when the file holds no labels).
    """
    candidates = list(DATASETS)
    evidence: list[str] = []
    set_aside: list[str] = []

    def narrow(allowed: tuple[str, ...], fact: str) -> None:
        nonlocal candidates
        kept = [d for d in candidates if d in allowed]
        if kept:
            candidates = kept
            evidence.append(fact)
        else:
            set_aside.append(fact)

    if label_min is not None and label_max is not None:
        if label_min < -1 - LABEL_SLACK or label_max > 1 + LABEL_SLACK:
            narrow(("mosi", "mosei"), f"labels reach {_extreme(label_min, label_max):g} (outside CH-SIMS's [-1, 1])")
    if has_unimodal_labels:
        narrow(("sims", "simsv2"), "it holds regression_labels_T/A/V (CH-SIMS's unimodal labels)")
    dims = (audio_dim, vision_dim)
    standard = [d for d, std in STANDARD_DIMS.items() if std == dims]
    if standard:
        narrow(tuple(standard), f"feature dims (audio {dims[0]}, vision {dims[1]}) are the standard {NAMES[standard[0]]} features")
    return DatasetInference(candidates=tuple(candidates), evidence=tuple(evidence), set_aside=tuple(set_aside))


def check_dataset(given: str, inference: DatasetInference, source: str) -> None:
    """Refuse a named dataset that the file contradicts (DataError naming both and the evidence)."""
    if given in inference.candidates:
        return
    shown = inference.dataset or (MOSI_LIKE if inference.family == "mosi" else "/".join(inference.candidates))
    raise DataError(
        f"{source}: the dataset is set to {given} ({NAMES.get(given, given)}), but the file looks like {shown}: "
        f"{inference.describe()}. Name {inference.dataset or inference.candidates[0]} instead (data.dataset / --dataset) "
        "or let the file decide (data.dataset=infer, no --dataset), or check that the path names the file you meant"
    )


def _extreme(lo: float, hi: float) -> float:
    return lo if abs(lo) > abs(hi) else hi
