"""The rationale format, MulCoT-RD's label rule on fixed strings, the symbolic teacher and JSONL files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepmlf.data.synth import make_probe, probe_latents
from deepmlf.errors import DataError
from deepmlf.rationale.format import format_rationale, normalise_value, parse_fields, parse_prediction
from deepmlf.rationale.teachers import label_is_right, probe_rationale, probe_rationales, read_rationales

OURS = "Text: positive (great). Voice: sarcastic. Face: slight smile. Prediction: -1.3"
MULCOT = ('"Text_analysis": the tweet praises 2 players. "Image_analysis": a crowd cheering. '
          '"Conflict_resolution": none. "Final_conclusion": upbeat. "Prediction": positive')


def test_fields_of_our_format():
    assert parse_fields(OURS) == {"Text": "positive (great)", "Voice": "sarcastic", "Face": "slight smile",
                                  "Prediction": "-1.3"}


def test_fields_of_mulcot_format():
    f = parse_fields(MULCOT)
    assert list(f) == ["Text_analysis", "Image_analysis", "Conflict_resolution", "Final_conclusion", "Prediction"]
    assert f["Image_analysis"] == "a crowd cheering" and f["Prediction"] == "positive"


def test_repeated_field_keeps_first_value():
    assert parse_fields("Voice: sincere. Voice: sarcastic")["Voice"] == "sincere"


@pytest.mark.parametrize("text, expected", [
    (OURS, -1.3),
    ("Text: very negative (2 words). Prediction: 0.4 or maybe 1.2", 0.4),  # first after Prediction
    ("the score is 1.0, no, 2.5", 2.5),  # no Prediction: the last candidate
    ("1.5 was my guess. Prediction: unsure", 1.5),  # nothing after Prediction: the last candidate
    ("Prediction: -.5", -0.5),
    ("no number at all", None),
])
def test_numeric_prediction_rule(text, expected):
    assert parse_prediction(text) == expected


def test_label_prediction_rule():
    labels = ["positive", "neutral", "negative"]
    assert parse_prediction(MULCOT, labels) == "positive"
    assert parse_prediction("negative words, but Prediction: Neutral then positive", labels) == "neutral"
    assert parse_prediction("negative at first, positive at last", labels) == "positive"
    assert parse_prediction("nothing", labels) is None


def test_normalise_value():
    assert normalise_value(" Positive (great).") == "positive"
    assert normalise_value("Slight  smile!") == "slight smile"


def test_symbolic_teacher_exact_string_and_round_trip():
    s = probe_rationale(valence=2, tone=-1, smile=0.7, score=-1.3, word="great")
    assert s == "Text: very positive (great). Voice: sarcastic. Face: smile. Prediction: -1.3"
    assert parse_fields(s) == {"Text": "very positive (great)", "Voice": "sarcastic", "Face": "smile",
                               "Prediction": "-1.3"}
    assert parse_prediction(s) == -1.3
    assert format_rationale({"Voice": "sincere", "Text": "negative"}, order=["Text", "Voice"]) == \
        "Text: negative. Voice: sincere"


def test_probe_rationales_follow_the_latents():
    data, lat = make_probe(n=100, seed=3), probe_latents(n=100, seed=3)
    r = probe_rationales(data, lat)
    assert len(r) == 100
    test = data["test"]
    for i, sid in enumerate(test["id"]):
        f = parse_fields(r[str(sid)])
        assert f["Voice"] == ("sarcastic" if lat["test"]["tone"][i] < 0 else "sincere")
        v, s, c = lat["test"]["valence"][i], lat["test"]["tone"][i], lat["test"]["smile"][i]
        assert float(f["Prediction"]) == pytest.approx(np.clip(s * v + c, -3, 3), abs=0.05)
        word = f["Text"].split("(")[1].rstrip(")")
        assert word in test["raw_text"][i].split()


def test_label_is_right():
    assert label_is_right(1.2, 0.3, tolerance=None) and not label_is_right(-0.1, 0.3, tolerance=None)
    assert label_is_right(0.5, 0.3, tolerance=0.25) and not label_is_right(0.6, 0.3, tolerance=0.25)
    assert not label_is_right(None, 0.3, tolerance=None)


def test_read_rationales_jsonl_cot_and_json_list(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps({"id": "a", "rationale": "Text: good"}) + "\n\n" + json.dumps({"id": 7, "cot": "x"}) + "\n")
    assert read_rationales(p) == {"a": "Text: good", "7": "x"}
    q = tmp_path / "test.json"
    q.write_text(json.dumps([{"id": "b", "cot": "Prediction: neutral", "label": "neutral"}]))
    assert read_rationales(q) == {"b": "Prediction: neutral"}


@pytest.mark.parametrize("body, message", [
    ('{"id": "a"}\n', "line 1 (id 'a'): no string 'rationale'"),
    ('{"rationale": "x"}\n', "line 1: expected an object with keys 'id'"),
    ('not json\n', "r.jsonl:1: not a JSON object"),
    ('{"id": "a", "rationale": "x"}\n{"id": "a", "rationale": "y"}\n', "line 2: id 'a' appears twice"),
    ('\n', "no rationales"),
])
def test_read_rationales_errors(tmp_path, body, message):
    p = tmp_path / "r.jsonl"
    p.write_text(body)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_rationales(p)


class _FakeLM:
    """generate() appends a fixed continuation per prompt (its transcript decides which)."""

    def __init__(self, tok):
        self.tok = tok

    def generate(self, input_ids, attention_mask, max_new_tokens, do_sample, pad_token_id):
        import torch

        rows = []
        for ids in input_ids.tolist():
            prompt = self.tok.decode([i for i in ids if i != pad_token_id])
            said = " good words. Prediction: 1.5" if "loved" in prompt else " dull. Prediction: 2.0"
            rows.append(ids + self.tok(said, add_special_tokens=False)["input_ids"])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])


def test_local_lm_teacher_keeps_only_right_labels():
    from deepmlf.backbones.tiny import byte_tokenizer
    from deepmlf.rationale.teachers import teach_with_lm

    tok = byte_tokenizer()
    kept, made = teach_with_lm(_FakeLM(tok), tok, ["i loved it", "it was bad", "i loved that"], [2.0, -1.0, -0.5],
                               ["a", "b", "c"], batch_size=2)
    assert made == 3
    assert [k["id"] for k in kept] == ["a"]  # b: 2.0 for a negative label; c: sarcastic, label negative
    assert kept[0]["rationale"] == "Text: good words. Prediction: 1.5" and kept[0]["parsed"] == 1.5
    kept, _ = teach_with_lm(_FakeLM(tok), tok, ["it was bad"], [1.6], ["b"], tolerance=0.5)
    assert [k["id"] for k in kept] == ["b"]
    with pytest.raises(DataError, match="must contain"):
        teach_with_lm(_FakeLM(tok), tok, ["x"], [0.0], ["x"], prompt="no slot")
