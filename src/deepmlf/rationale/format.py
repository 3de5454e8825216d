"""The rationale format (MulCoT-RD's fields, adapted to MSA) and its parser.

A rationale is a short text of `Field: value` clauses, e.g.

    Text: positive (great). Voice: sarcastic. Face: slight smile. Prediction: -1.3

MulCoT-RD's teacher writes five fields (Text_analysis, Image_analysis, Conflict_resolution,
Final_conclusion, Prediction), quoted JSON-style; `parse_fields` reads both spellings. The score
is read by MulCoT-RD's evaluator rule: the first candidate after "Prediction" when the word is
there, else the last candidate in the text (`parse_prediction`).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

DEFAULT_FIELDS = ("Text", "Voice", "Face", "Conflict", "Prediction")
PREDICTION_FIELD = "Prediction"

# A field name: a capitalised word (underscores allowed), optionally quoted, then a colon.
_KEY = re.compile(r"""(?:(?<=^)|(?<=[\s.;,{"']))["']?([A-Z][A-Za-z_]*)["']?\s*:\s*""")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)")
_PREDICTION = re.compile(r"prediction", re.IGNORECASE)


def format_rationale(fields: Mapping[str, str], order: Sequence[str] | None = None) -> str:
    """`{"Text": "positive", "Voice": "sarcastic"}` -> "Text: positive. Voice: sarcastic"."""
    names = list(order) if order is not None else list(fields)
    return ". ".join(f"{name}: {fields[name]}" for name in names if name in fields)


def parse_fields(text: str) -> dict[str, str]:
    """Field name -> value (stripped of surrounding quotes, spaces and the closing '.' / ',').
    A repeated field keeps its first value (a model that loops does not overwrite itself)."""
    keys = list(_KEY.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(text)
        value = text[m.end():end].strip().rstrip(",;}").strip().strip("\"'").strip()
        value = value[:-1].rstrip() if value.endswith(".") else value
        out.setdefault(m.group(1), value)
    return out


def normalise_value(value: str) -> str:
    """What field accuracy compares: lower case, parentheses dropped, punctuation stripped."""
    value = re.sub(r"\([^)]*\)", " ", value.lower())
    return " ".join(re.sub(r"[^\w\s.+-]", " ", value).split()).strip(" .")


def parse_prediction(text: str, labels: Sequence[str] | None = None) -> float | str | None:
    """MulCoT-RD's rule: candidates are numbers (or the given label words); the first candidate
    after the first "Prediction" when present, else the last candidate; None when there is none."""
    if labels is None:
        candidates = [(m.start(), float(m.group())) for m in _NUMBER.finditer(text)]
    else:
        pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in labels) + r")\b", re.IGNORECASE)
        lower = {w.lower(): w for w in labels}
        candidates = [(m.start(), lower[m.group(1).lower()]) for m in pattern.finditer(text)]
    if not candidates:
        return None
    anchor = _PREDICTION.search(text)
    if anchor is not None:
        after = [value for pos, value in candidates if pos >= anchor.end()]
        if after:
            return after[0]
    return candidates[-1][1]
