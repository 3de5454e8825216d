r"""The fusion probe: a synthetic MSA dataset that only a model fusing text, audio and vision solves.

It is written in the exact layout of MMSA's processed pickles (DESIGN.md §3), so everything that
reads MOSI or CH-SIMS reads it, and it powers the no-data demo. The full derivation, the noise
floors and the command that produced them are in docs/probe-dataset.md.

Generative rule, per sample (k = label scale: 1 for the "mosi" preset, 1/3 for "sims"):

    v ~ Uniform{-2, -1, +1, +2}        text valence: one word from a small lexicon in a short sentence
    s = -1 w.p. p_sarc (0.3), else +1  audio tone: -1 sarcastic (flips the words), +1 sincere
    c ~ Uniform[-1, 1]                 vision: smile intensity, adds to the label
    eps ~ Normal(0, sigma^2)           annotation noise (sigma = 0.3 k)
    y = clip(k (s v + c) + eps, lo, hi)   [lo, hi] = [-3, 3] (mosi) or [-1, 1] (sims)

Text alone cannot see s (30% of samples mean the opposite of what they say); audio-vision alone
cannot see v, and s alone carries no information about y at all (s v has the same distribution for
s = +1 and s = -1), so the label needs the product of a text cue and an audio cue plus a vision cue.

Features over the real frames t < length (zeros after, as in MMSA's padded arrays):

    audio[t, j]  = mu_a s + Normal(0, 1)      for the tone channels j < n_tone (mu_a = 1.0)
                   Normal(0, 1)               for the other channels
    vision[t, j] = c + Normal(0, 0.5^2)       for the smile channels j < n_smile
                   Normal(0, 1)               for the other channels

With the echo option (`echo` = ρ > 0; `deepmlf data synth --echo ρ`, default 0 = the probe above,
byte for byte) the audio also carries a noisy echo of the word's valence, as real prosody does:

    audio[t, n_tone + j] += ρ v / 2           for the echo channels j < n_echo (real frames only)

so that without the transcript v is still partly recoverable from the audio (the text-missing
oracle below is exact: the posterior of v given the echo channels' mean over the real frames).

Lengths are uniform in [L // 5, L]. In 2% of the samples of every split (at least one), one audio
value on a non-tone channel of a real frame is NaN, +inf or -inf, as MOSEI's COVAREP features hold
them (deepmlf's loader sets them to 0).

Variants (off by default; the default probe file is byte-identical to the one without them), for
checking that a recipe is not tuned to this one probe:

    rule="gate"       y = clip(k (g v + c) + eps), g = (s + 1) / 2: a flat "bored" tone (s = -1, 30%)
                      makes the words count for nothing instead of flipping them
    cues="last"       the tone / smile channels are the last n_tone / n_smile channels, not the first
    cues="swapped"    the tone lives in the vision channels and the smile in the audio channels

Four independent random streams (latents, text, audio, vision) are spawned from `seed`, so the
latents, hence the labels and the oracles, do not depend on the feature sizes. Same arguments,
byte-identical arrays.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from ..errors import ConfigError
from ..io import atomic_path
from ..metrics import msa_metrics

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
MIN_SAMPLES = 20  # every split needs a few samples (and two labels for a correlation)


@dataclass(frozen=True)
class ProbePreset:
    """Sizes and scales of one probe flavour. Dims copy the real corpus; sequences are shorter."""

    dataset: str  # the MMSA dataset whose layout, dims and label range it copies
    audio_dim: int  # Da: COVAREP 5 (MOSI) / Librosa 33 (SIMS)
    vision_dim: int  # Dv: Facet 20 (MOSI) / OpenFace 709 (SIMS)
    audio_len: int  # La frames per sample in the array (real MOSI: 375; kept short for the CPU demo)
    vision_len: int  # Lv (real MOSI: 500, SIMS: 55)
    label_scale: float  # k: multiplies s v + c
    label_range: tuple[float, float]
    n_tone: int  # audio channels carrying the tone s
    n_smile: int  # vision channels carrying the smile c
    n_echo: int = 1  # audio channels after the tone ones that carry the valence echo (echo > 0 only)
    text_dim: int = 768  # width of the zero `text` placeholder (MMSA's BERT feature width)


PRESETS: dict[str, ProbePreset] = {
    "mosi": ProbePreset("mosi", 5, 20, 50, 50, 1.0, (-3.0, 3.0), n_tone=2, n_smile=4),
    # SIMS vision is 709-d: 25 frames keep a 1000-sample file near 75 MB.
    "sims": ProbePreset("sims", 33, 709, 50, 25, 1.0 / 3.0, (-1.0, 1.0), n_tone=4, n_smile=8),
}

# The generative rule's constants (module docstring); changing one changes every number in the docs.
SARCASM_RATE = 0.3  # p_sarc: P(s = -1)
LABEL_NOISE = 0.3  # sigma / k: annotation noise in units of s v + c
TONE_SHIFT = 1.0  # mu_a: per-frame mean shift of the tone channels
SMILE_NOISE = 0.5  # per-frame std of the smile channels around c
NONFINITE_RATE = 0.02  # fraction of samples with one NaN/±inf audio value

VALENCES = (-2, -1, 1, 2)
# Lexicon: every sentence holds exactly one sentiment word; its valence is v.
ADJECTIVES: dict[int, tuple[str, ...]] = {
    2: ("wonderful", "brilliant", "amazing", "fantastic", "superb", "excellent"),
    1: ("good", "nice", "decent", "pleasant", "fine", "enjoyable"),
    -1: ("bad", "dull", "weak", "boring", "bland", "poor"),
    -2: ("awful", "terrible", "horrible", "dreadful", "atrocious", "painful"),
}
VERBS: dict[int, tuple[str, ...]] = {
    2: ("loved", "adored"),
    1: ("liked", "enjoyed"),
    -1: ("disliked", "resented"),
    -2: ("hated", "despised"),
}
NOUNS = ("film", "movie", "ending", "plot", "acting", "story", "music", "cast", "script", "show")
ADJ_TEMPLATES = (
    "the {n} was {w}",
    "i thought the {n} was {w}",
    "the {n} felt {w} to me",
    "that {n} was really {w}",
    "overall {a} {w} {n}",
    "what {a} {w} {n} this was",
    "to be fair the {n} was {w}",
)
VERB_TEMPLATES = ("i {w} the {n}", "i really {w} the {n}", "honestly i {w} that {n}")
FILLERS = ("", "", "", "so ", "um ", "well ", "you know ")  # neutral openers; "" most often

NOISE_FLOOR_NOTES = {
    "oracle": "knows v, s and c: predicts clip(k (s v + c)), the conditional median (Bayes-optimal MAE)",
    "decoder": "reads v from the words and s, c from the frames by hand: the cues are in the arrays",
    "text_only": "knows only v: predicts the median of y given v (sarcasm unseen)",
    "av_only": "knows only s and c: predicts clip(k c), the median of y given (s, c)",
    "constant": "predicts the median train label: what a model that learned nothing scores",
}


ECHO_FLOOR_NOTE = ("knows s, c and the audio's valence echo, not the words: the median of y under the exact "
                   "posterior of v given the echo (deepmlf data synth --echo)")
RULES = ("flip", "gate")  # flip: y = k (s v + c); gate: y = k ((s + 1) / 2 · v + c)
CUES = ("first", "last", "swapped")


@dataclass(frozen=True)
class CueLayout:
    """Where the tone s and the smile c live: (modality, channel indices) each."""

    tone: tuple[str, np.ndarray]
    smile: tuple[str, np.ndarray]

    def channels(self, modality: str) -> list[tuple[str, np.ndarray]]:
        return [(name, ch) for name, (mod, ch) in (("tone", self.tone), ("smile", self.smile)) if mod == modality]


def cue_layout(p: ProbePreset, cues: str = "first") -> CueLayout:
    if cues not in CUES:
        raise ConfigError(f"cues={cues!r}: expected one of {', '.join(CUES)}")
    if cues == "first":
        return CueLayout(("audio", np.arange(p.n_tone)), ("vision", np.arange(p.n_smile)))
    if cues == "last":
        return CueLayout(("audio", np.arange(p.audio_dim - p.n_tone, p.audio_dim)),
                         ("vision", np.arange(p.vision_dim - p.n_smile, p.vision_dim)))
    n_smile = min(p.n_smile, p.audio_dim - 1)  # keep one audio channel free for the NaN glitches
    return CueLayout(("vision", np.arange(p.n_tone)), ("audio", np.arange(n_smile)))


def _check_variant(rule: str, cues: str) -> None:
    if rule not in RULES:
        raise ConfigError(f"rule={rule!r}: expected one of {', '.join(RULES)}")
    if cues not in CUES:
        raise ConfigError(f"cues={cues!r}: expected one of {', '.join(CUES)}")


# --------------------------------------------------------------------------------------- public API
def make_probe(*, n: int = 1000, seed: int = 0, preset: str = "mosi", rule: str = "flip",
               cues: str = "first", echo: float = 0.0) -> dict[str, dict[str, Any]]:
    """The probe dataset as an MMSA-layout dict {"train", "valid", "test"} (70/15/15 split).

    Each split holds `raw_text` (object array of str), `audio` (N, La, Da) and `vision` (N, Lv, Dv)
    float32 zero-padded after `audio_lengths` / `vision_lengths` (lists of int, as in MMSA's files),
    `regression_labels` (N,) float32, `classification_labels` (N,) float32 (0 negative, 1 neutral,
    2 positive), `annotations` ("Negative" / "Neutral" / "Positive"), `id` ("probe_00012$_$0"),
    and `text` (N, 1, 768) float32 zeros: MMSA's pre-extracted text features, which deepmlf does
    not use (it tokenises `raw_text`). The "sims" preset adds `regression_labels_T/A/V`.
    `rule` and `cues` pick a variant (module docstring); the defaults are the probe of the docs.
    `echo` > 0 adds the valence echo to the audio (flip rule, first cues only).
    """
    p = _preset(preset)
    _check_n(n)
    _check_variant(rule, cues)
    if _check_echo(echo) and (rule, cues) != ("flip", "first"):
        raise ConfigError(f"echo={echo}: the valence echo is defined on the default probe (rule flip, cues first), "
                          f"not rule={rule!r}, cues={cues!r}")
    streams = _streams(seed)
    latents = _latents(n, p, streams["latent"], rule=rule)
    texts = _texts(latents["valence"], streams["text"])
    if cues == "first":
        audio, audio_lengths = _audio(latents["tone"], p, streams["audio"])
        vision, vision_lengths = _vision(latents["smile"], p, streams["vision"])
    else:
        layout = cue_layout(p, cues)
        audio, audio_lengths = _features(latents, layout, "audio", p.audio_len, p.audio_dim, streams["audio"],
                                         glitches=True)
        vision, vision_lengths = _features(latents, layout, "vision", p.vision_len, p.vision_dim, streams["vision"])
    if echo > 0:
        _add_echo(audio, audio_lengths, latents["valence"], p, echo)

    data: dict[str, dict[str, Any]] = {}
    for name, sl in _split_slices(n).items():
        y = latents["label"][sl]
        split: dict[str, Any] = {
            "raw_text": np.array(texts[sl], dtype=object),
            "audio": audio[sl],
            "vision": vision[sl],
            "audio_lengths": [int(v) for v in audio_lengths[sl]],
            "vision_lengths": [int(v) for v in vision_lengths[sl]],
            "regression_labels": y,
            "classification_labels": np.where(y < 0, 0, np.where(y == 0, 1, 2)).astype(np.float32),
            "annotations": ["Negative" if v < 0 else "Neutral" if v == 0 else "Positive" for v in y],
            "id": np.array([f"probe_{i:05d}$_$0" for i in range(sl.start, sl.stop)], dtype=object),
            "text": np.zeros((len(y), 1, p.text_dim), dtype=np.float32),
        }
        if p.dataset == "sims":
            # CH-SIMS has one annotation per modality seen alone: the words' literal sentiment (T),
            # the tone alone (A: sarcasm sounds negative), the face alone (V).
            k = p.label_scale
            split["regression_labels_T"] = np.clip(k * latents["valence"][sl], -1, 1).astype(np.float32)
            split["regression_labels_A"] = (k * (latents["tone"][sl] - 1) / 2).astype(np.float32)
            split["regression_labels_V"] = (k * latents["smile"][sl]).astype(np.float32)
        data[name] = split
    return data


def write_probe(path: str | Path, *, n: int = 1000, seed: int = 0, preset: str = "mosi", rule: str = "flip",
                cues: str = "first") -> Path:
    """Write `make_probe(n=, seed=, preset=, rule=, cues=)` as a pickle (protocol 4, as MMSA's) atomically."""
    return save_probe(path, make_probe(n=n, seed=seed, preset=preset, rule=rule, cues=cues))


def save_probe(path: str | Path, data: dict[str, dict[str, Any]]) -> Path:
    """Write an already-made probe dict (from `make_probe`) as a pickle, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return path


def probe_latents(*, n: int = 1000, seed: int = 0, preset: str = "mosi",
                  rule: str = "flip") -> dict[str, dict[str, np.ndarray]]:
    """The hidden cues of `make_probe(n=, seed=, preset=)`, per split, for analysis.

    Keys: `valence` v (int), `tone` s (+1 sincere / -1 sarcastic), `smile` c, `noise` eps, `label` y
    (equal to the split's `regression_labels`).
    """
    p = _preset(preset)
    _check_n(n)
    _check_variant(rule, "first")
    latents = _latents(n, p, _streams(seed)["latent"], rule=rule)
    return {name: {k: v[sl] for k, v in latents.items()} for name, sl in _split_slices(n).items()}


def probe_noise_floor(
    n: int = 1000,
    seed: int = 0,
    preset: str = "mosi",
    *,
    decoder: bool = True,
    data: dict[str, dict[str, Any]] | None = None,
    rule: str = "flip",
    cues: str = "first",
) -> dict[str, dict[str, float]]:
    """MMSA metrics on the test split of reference predictors (see NOISE_FLOOR_NOTES).

    Returns {"oracle", "decoder", "text_only", "av_only", "constant"} -> msa_metrics dict, in that
    order. `oracle` and `text_only` / `av_only` are the MAE-optimal (conditional-median) predictors
    given what each knows, hence also Acc2-optimal; their Acc5/Acc7/Corr are what those predictors
    score, not bounds. decoder=False skips the one row that needs the feature arrays (fast for
    large n: only the latents are drawn); `data`, the `make_probe` output for the same arguments,
    saves regenerating the arrays for it.
    """
    p = _preset(preset)
    _check_n(n)
    _check_variant(rule, cues)
    lat = probe_latents(n=n, seed=seed, preset=preset, rule=rule)
    test, y = lat["test"], lat["test"]["label"]
    k, (lo, hi) = p.label_scale, p.label_range
    v, s, c = test["valence"], test["tone"], test["smile"]
    # gate rule: given (s, c), y is k c + eps (s = -1) or has a symmetric v (s = +1): median k c again.
    text_median = {val: _text_only_median(val, sarcastic=0.0 if rule == "gate" else -1.0) for val in VALENCES}
    preds: dict[str, np.ndarray] = {"oracle": np.clip(k * (_text_factor(s, rule) * v + c), lo, hi)}
    if decoder:
        arrays = data if data is not None else make_probe(n=n, seed=seed, preset=preset, rule=rule, cues=cues)
        preds["decoder"] = _decode(arrays["test"], p, rule=rule, cues=cues)
    preds["text_only"] = np.clip(k * np.array([text_median[int(x)] for x in v]), lo, hi)
    preds["av_only"] = np.clip(k * c, lo, hi)
    preds["constant"] = np.full_like(y, np.median(lat["train"]["label"]))
    return {name: msa_metrics(pred.astype(np.float32), y, p.dataset) for name, pred in preds.items()}


def echo_floor(data: dict[str, dict[str, Any]], *, n: int = 1000, seed: int = 0, preset: str = "mosi",
               echo: float = 0.0) -> dict[str, dict[str, float]]:
    """Exact oracle floors of the echo probe on the test split, complete and text-missing.

    "oracle": knows v, s, c (the complete-modality floor: clip(k (s v + c)), as probe_noise_floor).
    "oracle_text_missing": knows s, c and the echo channels' mean m over the real frames, not v.
    m = ρ v / 2 + N(0, 1 / (L n_echo)) given v and the length L, so P(v | m) ∝ N(m; ρ v / 2, 1 / (L n_echo))
    (v uniform on {±1, ±2}), and the MAE-optimal prediction is the median of the mixture
    Σ_v P(v | m) N(k (s v + c), (σ k)²), clipped (clipping is monotone). Glitched values read as 0,
    as the loader does (2 % of the samples have one such value). `data`: make_probe(..., echo=echo).
    """
    p = _preset(preset)
    lat = probe_latents(n=n, seed=seed, preset=preset)["test"]
    y = lat["label"]
    k, (lo, hi) = p.label_scale, p.label_range
    s, c = lat["tone"].astype(np.float64), lat["smile"]
    out = {"oracle": msa_metrics(np.clip(k * (s * lat["valence"] + c), lo, hi).astype(np.float32), y, p.dataset)}
    test = data["test"]
    audio = np.nan_to_num(test["audio"], nan=0.0, posinf=0.0, neginf=0.0)
    L = np.asarray(test["audio_lengths"], dtype=np.float64)
    m = audio[:, :, p.n_tone: p.n_tone + p.n_echo].sum(axis=(1, 2)) / (L * p.n_echo)  # (N,)
    vals = np.array(VALENCES, dtype=np.float64)  # (4,)
    if echo > 0:
        loglik = -0.5 * (m[:, None] - echo * vals[None, :] / 2) ** 2 * (L * p.n_echo)[:, None]  # (N, 4)
        post = np.exp(loglik - loglik.max(1, keepdims=True))
        post /= post.sum(1, keepdims=True)
    else:
        post = np.full((len(y), 4), 0.25)
    sd = LABEL_NOISE * k
    preds = np.empty(len(y))
    for i in range(len(y)):
        means = k * (s[i] * vals + c[i])  # (4,)

        def excess(x: float) -> float:
            return float((post[i] * norm.cdf((x - means) / sd)).sum() - 0.5)

        preds[i] = brentq(excess, means.min() - 10 * sd, means.max() + 10 * sd, xtol=1e-10)
    out["oracle_text_missing"] = msa_metrics(np.clip(preds, lo, hi).astype(np.float32), y, p.dataset)
    return out


def _check_echo(echo: float) -> bool:
    if not (isinstance(echo, (int, float)) and np.isfinite(echo) and echo >= 0):
        raise ConfigError(f"echo={echo!r}: expected a number >= 0 (0 = no valence echo in the audio)")
    return echo > 0


def _add_echo(audio: np.ndarray, lengths: np.ndarray, valence: np.ndarray, p: ProbePreset, echo: float) -> None:
    """audio[t, n_tone + j] += ρ v / 2 on the real frames of the echo channels (in place)."""
    chans = slice(p.n_tone, p.n_tone + p.n_echo)
    real = ~_pad_mask(lengths, p.audio_len)  # (N, La)
    shift = (np.float32(echo / 2) * valence.astype(np.float32))[:, None, None]  # (N, 1, 1)
    audio[:, :, chans] += np.where(real[:, :, None], shift, np.float32(0.0))


# --------------------------------------------------------------------------------------- generation
def _streams(seed: int) -> dict[str, np.random.Generator]:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r}: expected a non-negative integer")
    names = ("latent", "text", "audio", "vision")
    children = np.random.SeedSequence(int(seed)).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def _text_factor(tone: np.ndarray, rule: str) -> np.ndarray:
    """What multiplies v: the tone s itself (flip) or (s + 1) / 2 (gate: 0 when the tone is flat)."""
    return (tone + 1) // 2 if rule == "gate" else tone


def _latents(n: int, p: ProbePreset, rng: np.random.Generator, *, rule: str = "flip") -> dict[str, np.ndarray]:
    valence = rng.choice(np.array(VALENCES, dtype=np.int64), size=n)
    tone = np.where(rng.random(n) < SARCASM_RATE, -1, 1).astype(np.int64)
    smile = rng.uniform(-1.0, 1.0, n)
    noise = rng.normal(0.0, LABEL_NOISE * p.label_scale, n)
    lo, hi = p.label_range
    label = np.clip(p.label_scale * (_text_factor(tone, rule) * valence + smile) + noise, lo, hi).astype(np.float32)
    return {"valence": valence, "tone": tone, "smile": smile, "noise": noise, "label": label}


def _texts(valence: np.ndarray, rng: np.random.Generator) -> list[str]:
    out = []
    for v in valence:
        v = int(v)
        use_verb = rng.random() < 0.3
        templates, words = (VERB_TEMPLATES, VERBS[v]) if use_verb else (ADJ_TEMPLATES, ADJECTIVES[v])
        template = templates[rng.integers(len(templates))]
        word = words[rng.integers(len(words))]
        noun = NOUNS[rng.integers(len(NOUNS))]
        filler = FILLERS[rng.integers(len(FILLERS))]
        article = "an" if word[0] in "aeiou" else "a"
        out.append(filler + template.format(n=noun, w=word, a=article))
    return out


def _lengths(n: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(max(1, seq_len // 5), seq_len + 1, n)


def _pad_mask(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """(N, L) True on padding frames (t >= length)."""
    return np.arange(seq_len)[None, :] >= lengths[:, None]


def _audio(tone: np.ndarray, p: ProbePreset, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = tone.shape[0]
    lengths = _lengths(n, p.audio_len, rng)
    x = rng.standard_normal((n, p.audio_len, p.audio_dim), dtype=np.float32)  # (N, La, Da)
    x[:, :, : p.n_tone] += np.float32(TONE_SHIFT) * tone[:, None, None].astype(np.float32)
    x[_pad_mask(lengths, p.audio_len)] = 0.0
    # COVAREP-like glitches on a non-tone channel of a real frame
    _add_glitches(x, lengths, lambda k: rng.integers(p.n_tone, p.audio_dim, k), rng)
    return x, lengths


def _add_glitches(x: np.ndarray, lengths: np.ndarray, pick_channels, rng: np.random.Generator) -> None:
    """One NaN/±inf in a real frame of a few samples of every split (so each split exercises the
    loader's repair), on the channels `pick_channels(k)` draws. The draw order is part of the probe
    file's bytes: rows per split, frames, channels, values."""
    picked = []
    for sl in _split_slices(x.shape[0]).values():
        size = sl.stop - sl.start
        picked.append(sl.start + rng.choice(size, size=max(1, int(round(NONFINITE_RATE * size))), replace=False))
    rows = np.concatenate(picked)
    frames = rng.integers(0, lengths[rows])
    chans = pick_channels(rows.shape[0])
    x[rows, frames, chans] = rng.choice(np.array([np.nan, np.inf, -np.inf], dtype=np.float32), rows.shape[0])


def _vision(smile: np.ndarray, p: ProbePreset, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = smile.shape[0]
    lengths = _lengths(n, p.vision_len, rng)
    x = rng.standard_normal((n, p.vision_len, p.vision_dim), dtype=np.float32)  # (N, Lv, Dv)
    x[:, :, : p.n_smile] *= np.float32(SMILE_NOISE)
    x[:, :, : p.n_smile] += smile[:, None, None].astype(np.float32)
    x[_pad_mask(lengths, p.vision_len)] = 0.0
    return x, lengths


def _features(latents: dict[str, np.ndarray], layout: CueLayout, modality: str, seq_len: int, dim: int,
              rng: np.random.Generator, *, glitches: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One modality's arrays for a variant layout: the same per-frame rules as `_audio` / `_vision`
    (tone: +mu_a s on N(0, 1); smile: c + N(0, 0.5^2)), on the channels `layout` gives it."""
    n = latents["tone"].shape[0]
    lengths = _lengths(n, seq_len, rng)
    x = rng.standard_normal((n, seq_len, dim), dtype=np.float32)
    cue_channels: list[int] = []
    for name, ch in layout.channels(modality):
        cue_channels += ch.tolist()
        if name == "tone":
            x[:, :, ch] += np.float32(TONE_SHIFT) * latents["tone"][:, None, None].astype(np.float32)
        else:
            x[:, :, ch] *= np.float32(SMILE_NOISE)
            x[:, :, ch] += latents["smile"][:, None, None].astype(np.float32)
    x[_pad_mask(lengths, seq_len)] = 0.0
    if glitches:
        free = np.setdiff1d(np.arange(dim), cue_channels)  # never a cue channel
        _add_glitches(x, lengths, lambda k: free[rng.integers(0, len(free), k)], rng)
    return x, lengths


# --------------------------------------------------------------------------------------- reference predictors
def _text_only_median(v: int, *, sarcastic: float = -1.0) -> float:
    """Median of u = s v + c + e given v (units of k), e ~ N(0, LABEL_NOISE^2); the text factor is
    1 (sincere, 1 - p) or `sarcastic` (p): -1 for the flip rule, 0 for the gate rule.

    P(u <= x | v) = (1 - p) G(x - v) + p G(x + v) (flip), with G the CDF of Uniform[-1, 1] + N(0, sigma^2):
    G(x) = [H(x + 1) - H(x - 1)] / 2, H(w) = w Phi(w / sigma) + sigma phi(w / sigma).
    Clipping is monotone, so the median of the clipped label is the clipped median.
    """
    sd = LABEL_NOISE

    def cdf_g(x: float) -> float:
        def h(w: float) -> float:
            return w * norm.cdf(w / sd) + sd * norm.pdf(w / sd)

        return (h(x + 1) - h(x - 1)) / 2

    def excess(x: float) -> float:
        other = x + v if sarcastic == -1.0 else x - sarcastic * v
        return (1 - SARCASM_RATE) * cdf_g(x - v) + SARCASM_RATE * cdf_g(other) - 0.5

    bound = abs(v) + 1 + 10 * sd
    return float(brentq(excess, -bound, bound, xtol=1e-12))


def _decode(split: dict[str, Any], p: ProbePreset, *, rule: str = "flip", cues: str = "first") -> np.ndarray:
    """Read the cues back from one split's arrays, by hand, as a model would have to."""
    words = {w: v for table in (ADJECTIVES, VERBS) for v, ws in table.items() for w in ws}
    valence = np.array([next(words[w] for w in t.split() if w in words) for t in split["raw_text"]], dtype=np.float64)
    arrays = {"audio": np.nan_to_num(split["audio"], nan=0.0, posinf=0.0, neginf=0.0),  # what the loader does
              "vision": split["vision"]}  # glitches are only ever in the audio
    lengths = {m: np.asarray(split[f"{m}_lengths"], dtype=np.float64) for m in arrays}
    layout = cue_layout(p, cues)

    def mean(mod: str, ch: np.ndarray) -> np.ndarray:
        cols = slice(int(ch[0]), int(ch[-1]) + 1)  # channels are contiguous; a slice sums as before
        return arrays[mod][:, :, cols].sum(axis=(1, 2)) / (lengths[mod] * len(ch))

    tone = np.where(mean(*layout.tone) >= 0, 1.0, -1.0)
    smile = np.clip(mean(*layout.smile), -1.0, 1.0)
    lo, hi = p.label_range
    return np.clip(p.label_scale * (_text_factor(tone, rule) * valence + smile), lo, hi)


# --------------------------------------------------------------------------------------- checks
def _preset(preset: str) -> ProbePreset:
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def _check_n(n: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < MIN_SAMPLES:
        raise ConfigError(f"n={n!r}: expected an integer >= {MIN_SAMPLES} (split 70/15/15 into train/valid/test)")


def _split_slices(n: int) -> dict[str, slice]:
    n_train = int(round(SPLIT_FRACTIONS[0] * n))
    n_valid = int(round(SPLIT_FRACTIONS[1] * n))
    bounds = (0, n_train, n_train + n_valid, n)
    return {name: slice(bounds[i], bounds[i + 1]) for i, name in enumerate(SPLITS)}


__all__ = [
    "CUES",
    "PRESETS",
    "NOISE_FLOOR_NOTES",
    "RULES",
    "cue_layout",
    "ProbePreset",
    "make_probe",
    "probe_latents",
    "probe_noise_floor",
    "save_probe",
    "write_probe",
]
