"""Missing modalities at test time (and text dropout in training): exact, documented semantics.

A modality is "missing" for a sample when its input carries nothing, in the form every deepmlf
model already reads (no model is told anything else):

  * text:   the transcript is the empty string. The collate turns it into one EOS token (so the
            "last real token" x_tK exists) and marks the sample in `Batch.text_missing`; a model
            trained with the double flow (`model.double_flow`) then predicts from its imagined flow.
  * audio:  every frame is zero and `audio_lengths` = 1: one all-zero real frame, so the AV
            encoder pools over that frame alone (length-aware pooling never divides by 0).
  * vision: the same on the vision arrays.

`apply_missing(split, ["audio", "vision"], rate=P, seed=S)` drops each listed modality of each
sample independently with probability P (P = 1: all samples). Each modality draws its own
per-sample mask from its own stream (seed S, modality name), so the text mask of `text` and of
`text+audio` at the same P and S are the same samples. The split is copied, never changed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConfigError
from .mmsa import Split

MODALITIES = ("text", "audio", "vision")
# The choices the CLI offers (any "+"-joined subset of MODALITIES is accepted).
MISSING_CHOICES = ("text", "audio", "vision", "audio+vision", "text+audio", "text+vision")


def parse_missing(spec: str | list[str] | tuple[str, ...], *, option: str = "--missing") -> tuple[str, ...]:
    """"audio+vision" -> ("audio", "vision") in MODALITIES order; ConfigError naming `option`."""
    names = spec.split("+") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip()]
    bad = [n for n in names if n not in MODALITIES]
    if bad or not names:
        raise ConfigError(
            f"{option}={spec!r}: expected modality names joined by '+', from {', '.join(MODALITIES)} "
            f"(e.g. text, audio, audio+vision)"
        )
    if set(names) == set(MODALITIES):
        raise ConfigError(f"{option}={spec!r}: every modality missing leaves nothing to predict from")
    return tuple(m for m in MODALITIES if m in names)


def check_rate(rate: float, *, option: str = "--missing-rate") -> float:
    if not (0.0 <= float(rate) <= 1.0):
        raise ConfigError(f"{option}={rate}: expected a probability in [0, 1]")
    return float(rate)


@dataclass(frozen=True)
class MissingSpec:
    """Which modalities go missing, for which fraction of samples, under which seed."""

    modalities: tuple[str, ...]
    rate: float = 1.0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str, rate: float = 1.0, seed: int = 0) -> "MissingSpec":
        return cls(parse_missing(spec), check_rate(rate), int(seed))

    @property
    def name(self) -> str:
        """"text", "audio+vision-p0.5" (in file names and table titles)."""
        base = "+".join(self.modalities)
        return base if self.rate == 1.0 else f"{base}-p{self.rate:g}"


def drop_mask(n: int, modality: str, *, rate: float, seed: int) -> np.ndarray:
    """(n,) bool: the samples whose `modality` is dropped. Independent per sample and modality."""
    check_rate(rate)
    if rate >= 1.0:
        return np.ones(n, dtype=bool)
    if rate <= 0.0:
        return np.zeros(n, dtype=bool)
    stream = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(modality.encode())]))
    return stream.random(n) < rate


def apply_missing(split: Split, modalities: str | tuple[str, ...] | list[str], *, rate: float = 1.0,
                  seed: int = 0) -> Split:
    """A copy of `split` with the listed modalities dropped (module docstring for the semantics)."""
    mods = parse_missing(modalities)
    n = len(split)
    changes: dict = {}
    if "text" in mods:
        gone = drop_mask(n, "text", rate=rate, seed=seed)
        changes["raw_text"] = ["" if g else t for t, g in zip(split.raw_text, gone)]
    for m in ("audio", "vision"):
        if m in mods:
            gone = drop_mask(n, m, rate=rate, seed=seed)
            x = getattr(split, m).copy()
            lengths = np.asarray(getattr(split, f"{m}_lengths")).copy()
            x[gone] = 0.0  # (N, L, D): every frame of a dropped sample
            lengths[gone] = 1  # one all-zero real frame
            changes[m], changes[f"{m}_lengths"] = x, lengths
    return replace(split, **changes)
