"""deepmlf: DeepMLF multimodal language fusion for multimodal sentiment analysis.

`import deepmlf` stays light (no torch): the API below is imported on first use.

    import deepmlf
    model = deepmlf.load("runs/x/seed-1111/best.pt")   # -> deepmlf.Predictor
    model.predict_video("clip.mp4")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "Predictor", "Prediction", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .predictor import Prediction, Predictor, load


def __getattr__(name: str) -> Any:
    if name in ("load", "Predictor", "Prediction"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'deepmlf' has no attribute {name!r}")
