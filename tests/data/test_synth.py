"""deepmlf.data.synth: the fusion probe is MMSA layout, deterministic, needs fusion, and its
documented noise floor (docs/probe-dataset.md) is what the code computes."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepmlf.cli import app
from deepmlf.data.mmsa import load_mmsa
from deepmlf.data.synth import (
    ADJECTIVES,
    PRESETS,
    SARCASM_RATE,
    VERBS,
    _text_only_median,
    make_probe,
    probe_latents,
    probe_noise_floor,
    write_probe,
)
from deepmlf.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "probe-dataset.md"
MMSA_KEYS = {
    "raw_text", "audio", "vision", "audio_lengths", "vision_lengths", "regression_labels",
    "classification_labels", "annotations", "id", "text",
}  # fmt: skip
LEXICON = {w: v for table in (ADJECTIVES, VERBS) for v, words in table.items() for w in words}


@pytest.fixture(scope="module")
def mosi_probe():
    return make_probe(n=200, seed=7, preset="mosi")


@pytest.fixture(scope="module")
def sims_probe():
    return make_probe(n=100, seed=7, preset="sims")


# --------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("preset", ["mosi", "sims"])
def test_layout_matches_mmsa(preset, mosi_probe, sims_probe):
    data = mosi_probe if preset == "mosi" else sims_probe
    p = PRESETS[preset]
    assert list(data) == ["train", "valid", "test"]
    n = 200 if preset == "mosi" else 100
    assert [len(s["regression_labels"]) for s in data.values()] == [int(0.7 * n), int(0.15 * n), int(0.15 * n)]
    extra = {"regression_labels_T", "regression_labels_A", "regression_labels_V"} if preset == "sims" else set()
    for split in data.values():
        assert set(split) == MMSA_KEYS | extra
        m = len(split["regression_labels"])
        assert split["audio"].shape == (m, p.audio_len, p.audio_dim) and split["audio"].dtype == np.float32
        assert split["vision"].shape == (m, p.vision_len, p.vision_dim) and split["vision"].dtype == np.float32
        assert split["regression_labels"].shape == (m,) and split["regression_labels"].dtype == np.float32
        assert split["text"].shape == (m, 1, 768) and not split["text"].any()
        assert split["raw_text"].dtype == object and all(isinstance(t, str) for t in split["raw_text"])
        assert all(isinstance(v, int) for v in split["audio_lengths"] + split["vision_lengths"])
        assert all(re.fullmatch(r"probe_\d{5}\$_\$0", i) for i in split["id"])
        y = split["regression_labels"]
        lo, hi = p.label_range
        assert y.min() >= lo and y.max() <= hi
        np.testing.assert_array_equal(split["classification_labels"], np.where(y < 0, 0, np.where(y == 0, 1, 2)))
        assert split["annotations"] == ["Negative" if v < 0 else "Neutral" if v == 0 else "Positive" for v in y]
    ids = [i for s in data.values() for i in s["id"]]
    assert len(set(ids)) == n


def test_labels_span_the_range(mosi_probe):
    y = np.concatenate([s["regression_labels"] for s in mosi_probe.values()])
    assert y.min() == -3.0 and y.max() == 3.0  # clipped at both ends (|s v + c| reaches 3)
    assert (y < 0).mean() == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("preset", ["mosi", "sims"])
def test_zero_padding_after_lengths(preset, mosi_probe, sims_probe):
    data = mosi_probe if preset == "mosi" else sims_probe
    for split in data.values():
        for key in ("audio", "vision"):
            x, lengths = split[key], np.asarray(split[f"{key}_lengths"])
            seq_len = x.shape[1]
            assert lengths.min() >= seq_len // 5 and lengths.max() <= seq_len
            pad = np.arange(seq_len)[None, :] >= lengths[:, None]  # (N, L)
            assert not x[pad].any(), f"{key}: non-zero padding"
            last_real = x[np.arange(len(x)), lengths - 1]  # (N, D)
            assert np.all(np.any(last_real != 0, axis=1)), f"{key}: a real frame is all zeros"


def test_nonfinite_audio_in_every_split_on_real_non_tone_frames(mosi_probe):
    p = PRESETS["mosi"]
    for name, split in mosi_probe.items():
        bad = ~np.isfinite(split["audio"])
        assert bad.any(), name
        rows, frames, chans = np.nonzero(bad)
        assert np.all(frames < np.asarray(split["audio_lengths"])[rows])
        assert np.all(chans >= p.n_tone)
        assert np.isfinite(split["vision"]).all()
    values = np.concatenate([s["audio"][~np.isfinite(s["audio"])] for s in mosi_probe.values()])
    assert len(values) == 3 + 1 + 1  # round(2% of 140) in train, at least one in valid (30) and test (30)


def test_texts_are_short_and_hold_one_word_of_the_valence():
    lat = probe_latents(n=300, seed=3)
    data = make_probe(n=300, seed=3)
    for name, split in data.items():
        for text, v in zip(split["raw_text"], lat[name]["valence"]):
            words = text.split()
            assert 4 <= len(words) <= 10, text
            hits = [LEXICON[w] for w in words if w in LEXICON]
            assert hits == [v], text
    assert "overall a amazing" not in " ".join(t for s in data.values() for t in s["raw_text"])


# --------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_bytes_and_other_seeds_differ():
    a, b = make_probe(n=60, seed=11), make_probe(n=60, seed=11)
    assert pickle.dumps(a, protocol=4) == pickle.dumps(b, protocol=4)
    c = make_probe(n=60, seed=12)
    assert not np.array_equal(a["train"]["regression_labels"], c["train"]["regression_labels"])
    assert not np.array_equal(a["train"]["audio"], c["train"]["audio"], equal_nan=True)
    assert list(a["train"]["raw_text"]) != list(c["train"]["raw_text"])


def test_labels_do_not_depend_on_the_preset_sizes():
    mosi, sims = probe_latents(n=80, seed=5, preset="mosi"), probe_latents(n=80, seed=5, preset="sims")
    for name in mosi:
        np.testing.assert_array_equal(mosi[name]["valence"], sims[name]["valence"])
        # Same draws; only k scales them (eps too), so the sims label is the mosi label / 3.
        np.testing.assert_allclose(sims[name]["label"], np.clip(mosi[name]["label"] / 3, -1, 1), atol=1e-6)


def test_latents_reproduce_the_labels():
    lat = probe_latents(n=200, seed=7)
    data = make_probe(n=200, seed=7)
    for name, split in data.items():
        z = lat[name]
        np.testing.assert_array_equal(z["label"], split["regression_labels"])
        expected = np.clip(z["tone"] * z["valence"] + z["smile"] + z["noise"], -3, 3).astype(np.float32)
        np.testing.assert_array_equal(split["regression_labels"], expected)
    tone = np.concatenate([z["tone"] for z in lat.values()])
    assert set(np.unique(tone)) == {-1, 1}
    assert (tone == -1).mean() == pytest.approx(SARCASM_RATE, abs=0.08)


# --------------------------------------------------------------------------------------- noise floor
def _documented_floor() -> dict[tuple[str, str], dict[str, float]]:
    """The 8-column table of docs/probe-dataset.md: (preset, predictor) -> Acc2, F1, Acc5, Acc7/3, MAE, Corr."""
    rows = {}
    cols = ("Acc2", "F1", "Acc5", "Acc7/3", "MAE", "Corr")
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0] in PRESETS:
            rows[(cells[0], cells[1])] = {k: float(v) for k, v in zip(cols, cells[2:])}
    return rows


@pytest.mark.parametrize("preset", ["mosi", "sims"])
def test_documented_noise_floor_matches_the_code(preset):
    documented = _documented_floor()
    floor = probe_noise_floor(1000, 0, preset)
    assert list(floor) == ["oracle", "decoder", "text_only", "av_only", "constant"]
    names = (
        {"Acc2": "Has0_acc_2", "F1": "Has0_F1_score", "Acc5": "Mult_acc_5", "Acc7/3": "Mult_acc_7"}
        if preset == "mosi"
        else {"Acc2": "Mult_acc_2", "F1": "F1_score", "Acc5": "Mult_acc_5", "Acc7/3": "Mult_acc_3"}
    )
    names.update(MAE="MAE", Corr="Corr")
    for predictor, metrics in floor.items():
        row = documented[(preset, predictor)]
        for col, key in names.items():
            if np.isnan(row[col]):
                assert np.isnan(metrics[key]), (predictor, key)
            else:
                assert metrics[key] == pytest.approx(row[col], abs=1e-4), (preset, predictor, key)


@pytest.mark.parametrize("preset", ["mosi", "sims"])
def test_fusion_is_required(preset):
    """Text-only and AV-only oracles are far from the full one, on the demo set and in the population."""
    for floor in (probe_noise_floor(1000, 0, preset), probe_noise_floor(20000, 1, preset, decoder=False)):
        acc2 = "Has0_acc_2" if preset == "mosi" else "Mult_acc_2"
        oracle = floor["oracle"]
        for partial in ("text_only", "av_only"):
            assert floor[partial]["MAE"] > 3 * oracle["MAE"], partial
            assert floor[partial][acc2] < oracle[acc2] - 0.2, partial
        assert floor["constant"]["MAE"] > floor["text_only"]["MAE"]


def test_decoder_reads_the_cues_back_from_the_arrays():
    floor = probe_noise_floor(1000, 0, "mosi")
    assert floor["decoder"]["MAE"] < floor["oracle"]["MAE"] + 0.01
    assert floor["decoder"]["Has0_acc_2"] >= floor["oracle"]["Has0_acc_2"] - 0.01


def test_text_only_median_is_the_conditional_median():
    lat = probe_latents(n=100_000, seed=2)
    z = {k: np.concatenate([s[k] for s in lat.values()]) for k in ("valence", "label")}
    for v in (-2, -1, 1, 2):
        empirical = float(np.median(z["label"][z["valence"] == v]))
        assert _text_only_median(v) == pytest.approx(empirical, abs=0.02), v
    assert _text_only_median(1) == pytest.approx(-_text_only_median(-1), abs=1e-9)


# --------------------------------------------------------------------------------------- files, loader, CLI
@pytest.mark.parametrize("preset", ["mosi", "sims"])
def test_write_probe_is_read_by_load_mmsa(tmp_path, preset):
    path = write_probe(tmp_path / "probe.pkl", n=60, seed=4, preset=preset)
    assert path == tmp_path / "probe.pkl" and not list(tmp_path.glob(".*.tmp"))
    with open(path, "rb") as f:
        raw = pickle.load(f)
    expected = make_probe(n=60, seed=4, preset=preset)
    np.testing.assert_array_equal(raw["test"]["audio"], expected["test"]["audio"])

    data = load_mmsa(path)
    assert data.dataset == preset  # inferred from the real corpus' feature dims
    for name, split in data.items():
        np.testing.assert_array_equal(split.labels, expected[name]["regression_labels"])
        np.testing.assert_array_equal(split.audio_lengths, expected[name]["audio_lengths"])
        assert split.raw_text == list(expected[name]["raw_text"])
        n_bad = int((~np.isfinite(expected[name]["audio"])).sum())
        assert split.nonfinite_replaced["audio"] == n_bad > 0
        assert np.isfinite(split.audio).all()


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="preset='mosei'.*mosi, sims"):
        make_probe(preset="mosei")
    with pytest.raises(ConfigError, match="n=10: expected an integer >= 20"):
        make_probe(n=10)
    with pytest.raises(ConfigError, match="seed=-1"):
        make_probe(seed=-1)


def test_cli_writes_the_pickle_and_prints_the_floor(tmp_path):
    out = tmp_path / "sub" / "probe.pkl"
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n", "100", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "train 70, valid 15, test 15" in result.output
    for name in ("oracle", "text_only", "av_only", "Has0_acc_2", "MAE"):
        assert name in result.output
    floor = probe_noise_floor(100, 3, "mosi")
    assert f"{floor['oracle']['MAE']:.4f}" in result.output

    bad = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n", "5"])
    assert bad.exit_code == 2
    assert "n=5: expected an integer >= 20" in bad.output


# --------------------------------------------------------------------------------------- variants
@pytest.mark.parametrize("cues", ["first", "last", "swapped"])
@pytest.mark.parametrize("rule", ["flip", "gate"])
def test_variants_put_the_cues_where_they_say_and_the_decoder_reads_them(rule, cues):
    from deepmlf.data.synth import cue_layout

    p = PRESETS["mosi"]
    lat = probe_latents(n=300, seed=2, rule=rule)
    data = make_probe(n=300, seed=2, rule=rule, cues=cues)
    layout = cue_layout(p, cues)
    for name, split in data.items():
        z = lat[name]
        factor = (z["tone"] + 1) // 2 if rule == "gate" else z["tone"]
        expected = np.clip(factor * z["valence"] + z["smile"] + z["noise"], -3, 3).astype(np.float32)
        np.testing.assert_array_equal(split["regression_labels"], expected)
        arrays = {m: np.nan_to_num(split[m], nan=0.0, posinf=0.0, neginf=0.0) for m in ("audio", "vision")}
        mod, ch = layout.tone
        tone_mean = arrays[mod][:, :, ch].sum(axis=(1, 2)) / (np.asarray(split[f"{mod}_lengths"]) * len(ch))
        assert (np.sign(tone_mean) == z["tone"]).mean() > 0.95
        mod, ch = layout.smile
        smile_mean = arrays[mod][:, :, ch].sum(axis=(1, 2)) / (np.asarray(split[f"{mod}_lengths"]) * len(ch))
        assert np.corrcoef(smile_mean, z["smile"])[0, 1] > 0.95
        bad = ~np.isfinite(split["audio"])
        assert bad.any() and not np.isin(np.nonzero(bad)[2], layout.tone[1] if layout.tone[0] == "audio"
                                         else layout.smile[1]).any()  # never on a cue channel
    floor = probe_noise_floor(1000, 0, rule=rule, cues=cues)
    assert floor["decoder"]["MAE"] < floor["oracle"]["MAE"] + 0.01
    for partial in ("text_only", "av_only"):
        assert floor[partial]["MAE"] > 3 * floor["oracle"]["MAE"]  # fusion is still required


def test_gate_rule_text_only_median_is_the_conditional_median():
    lat = probe_latents(n=100_000, seed=2, rule="gate")
    z = {k: np.concatenate([s[k] for s in lat.values()]) for k in ("valence", "label")}
    for v in (-2, -1, 1, 2):
        empirical = float(np.median(z["label"][z["valence"] == v]))
        assert _text_only_median(v, sarcastic=0.0) == pytest.approx(empirical, abs=0.02), v


def test_default_variant_is_the_documented_probe_and_bad_variants_are_named():
    a = make_probe(n=60, seed=11)
    b = make_probe(n=60, seed=11, rule="flip", cues="first")
    assert pickle.dumps(a, protocol=4) == pickle.dumps(b, protocol=4)
    with pytest.raises(ConfigError, match="rule='xor': expected one of flip, gate"):
        make_probe(n=60, rule="xor")
    with pytest.raises(ConfigError, match="cues='middle': expected one of first, last, swapped"):
        make_probe(n=60, cues="middle")


# ------------------------------------------------------------------ the echo probe (deepmlf data synth --echo)
# SHA-256 of pickle.dumps(make_probe(n=1000, seed=0), protocol=4) before the echo option existed.
TODAYS_PROBE_SHA256 = "8c1e1da47c37a2c728ea6453b60af602a56fdce1b6911d710f54677afdd32eba"


def test_echo_zero_keeps_todays_probe_byte_identical():
    import hashlib

    data = make_probe(n=1000, seed=0, echo=0.0)
    assert hashlib.sha256(pickle.dumps(data, protocol=4)).hexdigest() == TODAYS_PROBE_SHA256


def test_echo_shifts_only_the_echo_channel_of_real_frames_by_rho_v_over_2():
    plain, echoed = make_probe(n=60, seed=2), make_probe(n=60, seed=2, echo=1.5)
    p = PRESETS["mosi"]
    v = probe_latents(n=60, seed=2)["train"]["valence"]
    a, b = plain["train"]["audio"], echoed["train"]["audio"]
    diff = np.nan_to_num(b - a)  # glitch values stay where they were
    lengths = np.asarray(plain["train"]["audio_lengths"])
    for i in range(len(v)):
        assert np.allclose(diff[i, : lengths[i], p.n_tone], 0.75 * v[i], atol=1e-5)
        assert not diff[i, lengths[i]:].any()  # padding stays zero
    assert not np.delete(diff, p.n_tone, axis=2).any()
    assert plain["train"]["raw_text"].tolist() == echoed["train"]["raw_text"].tolist()
    with pytest.raises(ConfigError, match="echo=-1"):
        make_probe(n=60, echo=-1)


def test_echo_oracle_floors_are_exact_limits():
    from deepmlf.data.synth import echo_floor

    floor = probe_noise_floor(400, 0, "mosi", decoder=False)
    none = echo_floor(make_probe(n=400, seed=0), n=400, echo=0.0)
    # No echo: the median of y given s, c is k c, the AV-only predictor, exactly.
    assert none["oracle_text_missing"]["MAE"] == pytest.approx(floor["av_only"]["MAE"], abs=1e-6)
    assert none["oracle"]["MAE"] == pytest.approx(floor["oracle"]["MAE"], abs=1e-7)
    loud = echo_floor(make_probe(n=400, seed=0, echo=8.0), n=400, echo=8.0)
    assert loud["oracle_text_missing"]["MAE"] == pytest.approx(floor["oracle"]["MAE"], abs=2e-3)  # v read off the audio
    mid = echo_floor(make_probe(n=400, seed=0, echo=1.0), n=400, echo=1.0)
    assert floor["oracle"]["MAE"] < mid["oracle_text_missing"]["MAE"] < floor["av_only"]["MAE"]


def test_cli_echo_prints_the_text_missing_oracle(tmp_path):
    out = tmp_path / "echo.pkl"
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--n", "100", "--echo", "1"])
    assert result.exit_code == 0, result.output
    assert "oracle_text_missing" in result.output
