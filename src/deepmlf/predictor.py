"""The Python API for trained models: `deepmlf.load(path)` -> `Predictor`.

    import deepmlf
    model = deepmlf.load("runs/demo/seed-1111/best.pt")      # a best.pt, a run dir, or an export folder
    p = model.predict_video("clip.mp4")                       # the checkpoint's own feature set + Whisper
    p.score, p.heads["y_t"], p.heads["y_av"], p.heads["y_f"], p.text
    model.predict(text="so good", audio=a, vision=v)          # arrays: (La, Da) and (Lv, Dv), or batches
    frame = model.predict_split("unaligned_50.pkl", "test")   # one row per sample (id, label, heads)

Inputs are checked against what the model was trained on, naming the modality and both dims;
a video is refused when the checkpoint's features came from an extractor `predict_video` cannot
rerun (its message names both feature sets).

Rationale hook: a model whose forward output has a `rationale` field (list[str], one per sample),
or which offers `generate_rationale(batch, output) -> list[str]`, gets it in `Prediction.rationale`;
`predict` prints it. Plain DeepMLF has neither, and the field stays None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CheckpointError, DataError


@dataclass
class Prediction:
    """One sample's outputs: `score` is the model's prediction (y_o; y_av for a stage-1 AV regressor)."""

    id: str
    score: float
    heads: dict[str, float] = field(default_factory=dict)  # y_o, y_t, y_av, y_f (y_f = mean of fusion tokens)
    fusion_scores: list[float] | None = None  # y_f per fusion token
    text: str = ""
    text_source: str | None = None  # video only: "given", "asr", ...
    rationale: str | None = None
    face_frames: tuple[int, int] | None = None  # video only: (frames with a face, frames)
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rationales(model: Any, batch: Any, out: Any) -> list[str] | None:
    value = getattr(out, "rationale", None)
    if value is None and callable(getattr(model, "generate_rationale", None)):
        value = model.generate_rationale(batch, out)
    return list(value) if value is not None else None


class Predictor:
    """A loaded model plus what it expects (see module docstring). Built by `deepmlf.load`."""

    def __init__(self, loaded: Any, *, source: str) -> None:
        self._loaded = loaded
        self.source = source
        self.model = loaded.model
        self.config = loaded.cfg
        self.tokenizer = loaded.tokenizer
        self.stage = loaded.stage
        self.audio_dim = int(loaded.checkpoint["audio_dim"])
        self.vision_dim = int(loaded.checkpoint["vision_dim"])

    @property
    def feature_set(self) -> dict[str, Any] | None:
        return self._loaded.checkpoint.get("feature_set")

    def __repr__(self) -> str:
        fs = (self.feature_set or {}).get("id", "none recorded")
        return (f"Predictor({self.source!r}, stage={self.stage}, backbone={self.config.model.backbone!r}, "
                f"audio_dim={self.audio_dim}, vision_dim={self.vision_dim}, feature_set={fs!r})")

    # ------------------------------------------------------------------ arrays
    def _as_samples(self, x: Any, name: str, dim: int, lengths: Any) -> tuple[list[np.ndarray], bool]:
        fs = (self.feature_set or {}).get("id")
        origin = f" (feature set {fs})" if fs else ""
        ndim = getattr(x, "ndim", None)  # numpy arrays and torch tensors
        single = ndim == 2
        if single:
            seqs = [np.asarray(x, dtype=np.float32)]
        elif ndim == 3:
            arr = np.asarray(x, dtype=np.float32)
            lens = [arr.shape[1]] * arr.shape[0] if lengths is None else [int(v) for v in lengths]
            if len(lens) != arr.shape[0]:
                raise DataError(f"{name}_lengths: {len(lens)} lengths for {arr.shape[0]} {name} samples")
            seqs = [arr[i, : lens[i]] for i in range(arr.shape[0])]
        elif isinstance(x, (list, tuple)):
            seqs = [np.asarray(s, dtype=np.float32) for s in x]
        else:
            raise DataError(f"{name}: expected a (frames, {dim}) array, a (batch, frames, {dim}) array or a list of "
                            f"(frames, {dim}) arrays; got {type(x).__name__}")
        for i, s in enumerate(seqs):
            if s.ndim != 2:
                raise DataError(f"{name}: sample {i} has shape {tuple(s.shape)}; expected (frames, {dim})")
            if s.shape[1] != dim:
                raise DataError(f"{name}: expected feature dim {dim} per frame, as the model was trained{origin}; "
                                f"got {s.shape[1]} (sample {i}, shape {tuple(s.shape)})")
            if s.shape[0] == 0:
                raise DataError(f"{name}: sample {i} has no frames")
            if not np.isfinite(s).all():
                raise DataError(f"{name}: sample {i} holds NaN/inf values")
        return seqs, single

    def _split(self, texts: list[str], audio: list[np.ndarray], vision: list[np.ndarray], ids: list[str]):
        from .data.mmsa import Split, clean_text

        texts = [clean_text(t)[0] for t in texts]  # a lone surrogate would crash the tokenizer

        def pad(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            out = np.zeros((len(seqs), max(s.shape[0] for s in seqs), seqs[0].shape[1]), dtype=np.float32)
            for i, s in enumerate(seqs):
                out[i, : s.shape[0]] = s
            return out, np.array([s.shape[0] for s in seqs], dtype=np.int64)

        a, al = pad(audio)
        v, vl = pad(vision)
        return Split(name="predict", raw_text=texts, audio=a, audio_lengths=al, vision=v, vision_lengths=vl,
                     labels=np.full(len(texts), np.nan, dtype=np.float32), ids=ids, has_labels=False)

    def _run(self, split) -> list[Prediction]:
        import torch

        from .data import make_loader
        from .train.evaluate import no_grad_context

        loader = make_loader(split, self.tokenizer, max_text_len=self.config.data.max_text_len,
                             batch_size=self.config.data.eval_batch_size, shuffle=False)
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        was_training = self.model.training
        self.model.eval()
        preds: list[Prediction] = []
        try:
            with no_grad_context(self.model):
                for batch in loader:
                    batch = batch.to(device)
                    out = self.model(batch)
                    rationale = _rationales(self.model, batch, out)
                    score = out.prediction.detach().float().cpu().numpy().reshape(-1)
                    heads = {}
                    for name in ("y_o", "y_t", "y_av", "y_f"):
                        value = getattr(out, name, None)
                        if isinstance(value, torch.Tensor):
                            heads[name] = value.detach().float().cpu().numpy()
                    for i, sid in enumerate(batch.ids):
                        yf = heads.get("y_f")
                        preds.append(Prediction(
                            id=sid, score=float(score[i]),
                            heads={k: float(v[i].mean() if v.ndim == 2 else v[i]) for k, v in heads.items()},
                            fusion_scores=[float(t) for t in yf[i]] if yf is not None and yf.ndim == 2 else None,
                            text=split.raw_text[len(preds)],
                            rationale=rationale[i] if rationale is not None else None,
                        ))
        finally:
            self.model.train(was_training)
        return preds

    def predict(self, *, text: str | Sequence[str], audio: Any, vision: Any, audio_lengths: Any = None,
                vision_lengths: Any = None, ids: Sequence[str] | None = None) -> Prediction | list[Prediction]:
        """Score feature arrays. One sample: text str, audio (La, Da), vision (Lv, Dv) -> Prediction.
        A batch: texts list, audio (B, La, Da) [+ audio_lengths] or a list of (La_i, Da) -> list[Prediction]."""
        a, single_a = self._as_samples(audio, "audio", self.audio_dim, audio_lengths)
        v, single_v = self._as_samples(vision, "vision", self.vision_dim, vision_lengths)
        texts = [text] if isinstance(text, str) else [str(t) for t in text]
        if not (len(a) == len(v) == len(texts)):
            raise DataError(f"text/audio/vision: {len(texts)} transcript(s), {len(a)} audio and {len(v)} vision "
                            "sample(s); expected one of each per sample")
        ids = list(ids) if ids is not None else [f"sample-{i}" for i in range(len(texts))]
        preds = self._run(self._split(texts, a, v, ids))
        return preds[0] if (single_a and single_v and isinstance(text, str)) else preds

    # ------------------------------------------------------------------ raw media
    def _feature_set_for_video(self):
        from .features.registry import FeatureSetMismatch, describe_id, feature_set_from_meta

        if not self.feature_set:
            raise FeatureSetMismatch(
                f"{self.source} was trained on {describe_id(None)}, which `predict_video` cannot compute from a "
                "video; train on features from `deepmlf features extract` (feature sets: deepmlf features list)"
            )
        return feature_set_from_meta(self.feature_set)

    def predict_video(self, path: str | Path, *, text: str | None = None) -> Prediction:
        """Extract the checkpoint's feature set from one clip (Whisper for the transcript unless `text`) and score it."""
        return self.predict_videos([path], texts=[text], progress=False)[0]

    def predict_videos(self, paths: Sequence[str | Path], *, texts: Sequence[str | None] | None = None,
                       progress: bool = True) -> list[Prediction]:
        from tqdm.auto import tqdm

        from .features.extract import extract_clip
        from .features.sources import Clip

        fs = self._feature_set_for_video()
        texts = list(texts) if texts is not None else [None] * len(paths)
        if len(texts) != len(paths):
            raise DataError(f"texts: {len(texts)} for {len(paths)} video(s)")
        feats = []
        for p, t in tqdm(list(zip(paths, texts)), desc=f"extracting {fs.id}", unit="clip", disable=not progress):
            p = Path(p)
            clip = Clip(path=p, video_id=p.parent.name or "clip", clip_id=p.stem, split="test")
            feats.append(extract_clip(fs, clip, asr="auto", text=t))
        preds = self._run(self._split([f.text for f in feats], [f.audio for f in feats], [f.vision for f in feats],
                                      [f.clip.id for f in feats]))
        for p, f in zip(preds, feats):
            p.text_source = f.text_source
            p.face_frames = (int(f.face_found.sum()), int(f.face_found.size))
            p.duration_s = f.info.duration_s
        return preds

    # ------------------------------------------------------------------ pickles
    def predict_split(self, data: str | Path, split: str = "test") -> "Any":
        """Per-sample predictions on one split of an MMSA pickle: DataFrame id, label, y_o, y_t, y_av, y_f."""
        from .tasks import MSATask
        from .train.run import _checkpoint_split, _predict_split

        preds = _predict_split(self._loaded, _checkpoint_split(self._loaded, data, split, require_labels=False))
        return preds.to_frame(MSATask.of_config(self.config))


def load(path: str | Path) -> Predictor:
    """A trained model from a best.pt, a run directory (its best seed on validation) or a `deepmlf export` folder."""
    from .export import WEIGHTS, choose_seed, read_export
    from .train.run import load_model_from_checkpoint, model_from_checkpoint_dict

    path = Path(path)
    if path.is_dir() and (path / WEIGHTS).is_file():
        return Predictor(model_from_checkpoint_dict(read_export(path), path), source=str(path))
    if path.is_dir():
        seed, ckpt = choose_seed(path)
        return Predictor(model_from_checkpoint_dict(ckpt, path / f"seed-{seed}" / "best.pt"),
                         source=str(path / f"seed-{seed}" / "best.pt"))
    if not path.exists():
        raise CheckpointError(f"{path} does not exist (expected a best.pt, a run directory or an export folder)")
    return Predictor(load_model_from_checkpoint(path), source=str(path))
