"""The dialogue probe: synthetic conversations with a known answer (the no-data ERC demo).

Latent process (emotional inertia): each speaker has their own emotion chain; at a speaker's next
turn the emotion stays with probability `stay`, else it is redrawn from the prior π (which may
draw it again). Speakers' chains are independent.

Observations per utterance (real English text, so a real encoder reads real sentences):
* text: with probability `p_explicit` an *explicit* line (a template holding a lexicon word of
  the emotion: "I'm absolutely thrilled."), else an *ambiguous* line compatible with several
  emotions ("I can't believe you did that." fits anger, surprise, joy), uniform among the lines
  compatible with the emotion;
* audio: N(m_y, I) in `d_audio` dims, m_y = arousal cue (±μ_a) + a small class direction;
* video: N(m'_y, I), a weaker valence cue.
Who speaks is a speaker tag, not written in the text, so "same speaker as before" reaches a
model only through its speaker ids.

The exact Bayes oracle runs forward-backward along each speaker's chain with the per-utterance
likelihoods p(text|y) p(audio|y) p(video|y): the best any model can do given the whole dialogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core import Conversation, ERCData

CLASSES = ("neutral", "joy", "anger", "sadness", "surprise")
PRIOR = np.array([0.32, 0.2, 0.18, 0.15, 0.15])
LEXICON = {
    "neutral": ["fine", "okay with it", "not bothered", "indifferent"],
    "joy": ["thrilled", "delighted", "so happy", "overjoyed"],
    "anger": ["furious", "livid", "really annoyed", "fed up"],
    "sadness": ["heartbroken", "miserable", "so sad", "down"],
    "surprise": ["stunned", "shocked", "amazed", "speechless"],
}
TEMPLATES = ["I'm {w}.", "Honestly, I feel {w}.", "I am {w} right now.", "Wow, I'm {w} about this."]
AMBIGUOUS = {  # line -> the emotions it can carry
    "I can't believe you did that.": ("anger", "surprise", "joy"),
    "Okay.": ("neutral", "sadness", "anger"),
    "Really?": ("surprise", "anger", "neutral"),
    "Well, that happened.": ("neutral", "sadness", "surprise"),
    "Oh my God.": ("joy", "surprise", "sadness"),
    "Whatever you say.": ("neutral", "anger", "sadness"),
}
AROUSAL = {"neutral": -1.0, "joy": 1.0, "anger": 1.0, "sadness": -1.0, "surprise": 1.0}
VALENCE = {"neutral": 0.0, "joy": 1.0, "anger": -1.0, "sadness": -1.0, "surprise": 0.3}
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class ProbeSpec:
    n_dialogues: int = 600
    min_len: int = 6
    max_len: int = 12
    max_speakers: int = 3
    stay: float = 0.8
    p_explicit: float = 0.55
    d_audio: int = 16
    d_video: int = 16
    mu_audio: float = 0.5  # arousal cue size (per the first 4 dims)
    mu_video: float = 0.4
    seed: int = 0


def _means(spec: ProbeSpec) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)  # fixed: the means are part of the probe's definition
    C = len(CLASSES)
    ma = np.zeros((C, spec.d_audio))
    mv = np.zeros((C, spec.d_video))
    for i, c in enumerate(CLASSES):
        ma[i, :4] = spec.mu_audio * AROUSAL[c]
        ma[i, 4:] = 0.35 * spec.mu_audio * rng.standard_normal(spec.d_audio - 4)
        mv[i, :4] = spec.mu_video * VALENCE[c]
        mv[i, 4:] = 0.35 * spec.mu_video * rng.standard_normal(spec.d_video - 4)
    return ma, mv


def _text_table() -> tuple[list[str], np.ndarray]:
    """Every line and p(line | y) (L, C): explicit lines carry 1 class, ambiguous lines several."""
    lines, rows = [], []
    for i, c in enumerate(CLASSES):
        for w in LEXICON[c]:
            for t in TEMPLATES:
                lines.append(t.format(w=w))
                r = np.zeros(len(CLASSES))
                r[i] = 1.0 / (len(LEXICON[c]) * len(TEMPLATES))
                rows.append(r)
    amb = np.zeros((len(AMBIGUOUS), len(CLASSES)))
    for j, (line, emos) in enumerate(AMBIGUOUS.items()):
        lines.append(line)
        for e in emos:
            amb[j, CLASSES.index(e)] = 1.0
    amb /= amb.sum(0, keepdims=True)  # uniform among the lines compatible with y
    return lines, np.vstack(rows + [*amb])


def make_probe(spec: ProbeSpec = ProbeSpec()) -> tuple[ERCData, dict[str, np.ndarray]]:
    """(data with audio/video features attached, per-utterance text likelihoods for the oracle)."""
    rng = np.random.default_rng(spec.seed)
    lines, p_line = _text_table()
    n_explicit = len(lines) - len(AMBIGUOUS)
    ma, mv = _means(spec)
    C = len(CLASSES)
    convs, lik = [], {}
    n_train = int(SPLIT_FRACTIONS[0] * spec.n_dialogues)
    n_valid = int(SPLIT_FRACTIONS[1] * spec.n_dialogues)
    splits: dict[str, list[Conversation]] = {"train": [], "valid": [], "test": []}
    for d in range(spec.n_dialogues):
        split = "train" if d < n_train else "valid" if d < n_train + n_valid else "test"
        k = int(rng.integers(spec.min_len, spec.max_len + 1))
        n_spk = int(rng.integers(2, spec.max_speakers + 1))
        who = [int(rng.integers(n_spk)) for _ in range(k)]
        state: dict[int, int] = {}
        labels, texts, audio, video, tl = [], [], [], [], []
        for s in who:
            if s not in state or rng.random() >= spec.stay:
                state[s] = int(rng.choice(C, p=PRIOR))
            y = state[s]
            if rng.random() < spec.p_explicit:
                col = p_line[:n_explicit, y]
                li = int(rng.choice(n_explicit, p=col / col.sum()))
            else:
                col = p_line[n_explicit:, y]
                li = n_explicit + int(rng.choice(len(AMBIGUOUS), p=col))
            labels.append(y)
            texts.append(lines[li])
            # p(line | y) including the explicit/ambiguous draw
            tl.append((spec.p_explicit if li < n_explicit else 1 - spec.p_explicit) * p_line[li])
            audio.append(ma[y] + rng.standard_normal(spec.d_audio))
            video.append(mv[y] + rng.standard_normal(spec.d_video))
        uids = [f"d{d}_u{j}" for j in range(k)]
        conv = Conversation(dialogue_id=f"d{d}", utterance_ids=uids, speakers=[f"S{s}" for s in who], texts=texts,
                            labels=labels, features={"audio": np.asarray(audio, np.float32),
                                                     "video": np.asarray(video, np.float32)})
        splits[split].append(conv)
        for u, t in zip(uids, tl):
            lik[f"{split}/{u}"] = t
    data = ERCData(splits=splits, classes=CLASSES, source="probe", path=f"dialogue-probe(seed={spec.seed})",
                   speaker_mode="per_dialogue")
    return data, lik


def _gauss_loglik(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    return -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1)  # (K, C), up to a constant


def oracle_posteriors(data: ERCData, text_lik: dict[str, np.ndarray], spec: ProbeSpec,
                      modalities: tuple[str, ...] = ("text", "audio", "video")) -> dict[str, np.ndarray]:
    """p(y_j | the whole dialogue) for every utterance: forward-backward along each speaker's chain."""
    ma, mv = _means(spec)
    C = len(CLASSES)
    trans = spec.stay * np.eye(C) + (1 - spec.stay) * PRIOR[None, :]  # (from, to)
    post: dict[str, np.ndarray] = {}
    for split, convs in data.splits.items():
        for c in convs:
            logl = np.zeros((len(c), C))
            if "text" in modalities:
                logl += np.log(np.stack([text_lik[f"{split}/{u}"] for u in c.utterance_ids]) + 1e-300)
            if "audio" in modalities:
                logl += _gauss_loglik(c.features["audio"].astype(np.float64), ma)
            if "video" in modalities:
                logl += _gauss_loglik(c.features["video"].astype(np.float64), mv)
            for s in set(c.speakers):
                idx = [j for j, x in enumerate(c.speakers) if x == s]
                e = np.exp(logl[idx] - logl[idx].max(1, keepdims=True))  # (n, C) scaled emissions
                n = len(idx)
                fw = np.zeros((n, C))
                bw = np.ones((n, C))
                fw[0] = PRIOR * e[0]
                fw[0] /= fw[0].sum()
                for t in range(1, n):
                    fw[t] = (fw[t - 1] @ trans) * e[t]
                    fw[t] /= fw[t].sum()
                for t in range(n - 2, -1, -1):
                    bw[t] = trans @ (e[t + 1] * bw[t + 1])
                    bw[t] /= bw[t].sum()
                p = fw * bw
                p /= p.sum(1, keepdims=True)
                for t, j in enumerate(idx):
                    post[f"{split}/{c.utterance_ids[j]}"] = p[t]
    return post
