"""--missing semantics: what a dropped modality looks like, seeded per-sample drops, text dropout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepmlf.data import load_mmsa, make_loader
from deepmlf.data.dataset import make_collate
from deepmlf.data.missing import MissingSpec, apply_missing, drop_mask, parse_missing
from deepmlf.errors import ConfigError


@pytest.fixture(scope="module")
def test_split(mmsa_pickle):
    return load_mmsa(mmsa_pickle)["test"]


def test_text_missing_is_an_empty_transcript_and_flagged(test_split, byte_tok):
    gone = apply_missing(test_split, "text")
    assert gone.raw_text == [""] * len(test_split)
    np.testing.assert_array_equal(gone.audio, test_split.audio)  # the rest is untouched
    assert test_split.raw_text[0] != ""  # a copy: the original split is unchanged
    batch = next(iter(make_loader(gone, byte_tok, max_text_len=8, batch_size=4, shuffle=False)))
    assert batch.attention_mask.sum(1).tolist() == [1] * 4  # one EOS token
    assert batch.input_ids[:, 0].tolist() == [byte_tok.eos_token_id] * 4
    assert batch.text_missing.tolist() == [True] * 4
    full = next(iter(make_loader(test_split, byte_tok, max_text_len=8, batch_size=4, shuffle=False)))
    assert full.text_missing.tolist() == [False] * 4


@pytest.mark.parametrize("modality", ["audio", "vision"])
def test_av_missing_is_one_all_zero_frame(test_split, modality):
    gone = apply_missing(test_split, modality)
    assert not getattr(gone, modality).any()
    assert getattr(gone, f"{modality}_lengths").tolist() == [1] * len(test_split)
    assert getattr(gone, f"{modality}_lengths") is not getattr(test_split, f"{modality}_lengths")
    assert gone.raw_text == test_split.raw_text
    other = "vision" if modality == "audio" else "audio"
    np.testing.assert_array_equal(getattr(gone, other), getattr(test_split, other))


def test_rate_drops_independent_seeded_samples(test_split):
    a = drop_mask(1000, "text", rate=0.3, seed=4)
    assert a.tolist() == drop_mask(1000, "text", rate=0.3, seed=4).tolist()  # seeded
    assert 250 < a.sum() < 350
    assert a.tolist() != drop_mask(1000, "audio", rate=0.3, seed=4).tolist()  # own stream per modality
    assert a.tolist() != drop_mask(1000, "text", rate=0.3, seed=5).tolist()
    one = apply_missing(test_split, "text", rate=0.5, seed=1)
    both = apply_missing(test_split, "text+audio", rate=0.5, seed=1)
    assert one.raw_text == both.raw_text  # the text mask does not depend on what else is dropped
    assert apply_missing(test_split, "text", rate=0.0).raw_text == test_split.raw_text


def test_bad_specs_name_the_option():
    assert parse_missing("vision+audio") == ("audio", "vision")
    with pytest.raises(ConfigError, match="--missing='smell'"):
        parse_missing("smell")
    with pytest.raises(ConfigError, match="nothing to predict"):
        parse_missing("text+audio+vision")
    with pytest.raises(ConfigError, match="--missing-rate=1.5"):
        MissingSpec.parse("text", 1.5)
    assert MissingSpec.parse("audio+vision", 0.5).name == "audio+vision-p0.5"
    assert MissingSpec.parse("text").name == "text"


def test_text_dropout_empties_transcripts_at_its_rate(test_split, byte_tok):
    samples = [{"raw_text": "hello there", "audio": np.zeros((2, 5), np.float32), "audio_length": 1,
                "vision": np.zeros((2, 3), np.float32), "vision_length": 1, "label": 0.0, "id": str(i)}
               for i in range(400)]
    torch.manual_seed(0)
    batch = make_collate(byte_tok, 8, text_dropout=0.25)(samples)
    assert 70 < int(batch.text_missing.sum()) < 130
    assert (batch.attention_mask.sum(1)[batch.text_missing] == 1).all()
    state = torch.get_rng_state()
    off = make_collate(byte_tok, 8)(samples)
    assert torch.equal(torch.get_rng_state(), state)  # rate 0 draws nothing: bit-identical training
    assert not off.text_missing.any()
    with pytest.raises(ConfigError, match="data.text_dropout"):
        make_collate(byte_tok, 8, text_dropout=2.0)
