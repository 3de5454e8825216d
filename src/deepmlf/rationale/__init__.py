"""Rationales beside scores (MulCoT-RD, adapted): format and parser, teachers, metrics.

The model side (the rationale head that generates after DeepMLF's fusion tokens) lives in
`deepmlf.model.rationale`; the token-level KD loss in `deepmlf.losses.token_kd`.
"""

from .format import DEFAULT_FIELDS, format_rationale, normalise_value, parse_fields, parse_prediction
from .teachers import SYMBOLIC_TEACHER, probe_rationale, probe_rationales, read_rationales

__all__ = [
    "DEFAULT_FIELDS", "format_rationale", "normalise_value", "parse_fields", "parse_prediction",
    "SYMBOLIC_TEACHER", "probe_rationale", "probe_rationales", "read_rationales",
]
