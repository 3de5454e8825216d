"""The embedded demo (`deepmlf demo`, `make demo`): DeepMLF vs text-only vs AV-only on the fusion probe.

`run_demo(out_dir, n=, fast=, overrides=)` runs it end to end and writes `report.md`; see
`pipeline` for the stages, `text_reference` / `av_reference` for the unimodal baselines.
"""

from .pipeline import DEFAULT_OUT, DEMO_N, FAST_N, DemoResult, demo_config, run_demo
from .table import comparison_table, fusion_verdict

__all__ = [
    "DEFAULT_OUT", "DEMO_N", "FAST_N", "DemoResult", "comparison_table", "demo_config",
    "fusion_verdict", "run_demo",
]
