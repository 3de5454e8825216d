"""A pickle-free file for MMSA data: one `.safetensors` file, arrays as tensors, everything else
(transcripts, ids, the feature-set record, nested dicts) as JSON in its metadata header.

`deepmlf data convert IN.pkl OUT.safetensors` writes it; `load_mmsa` (so every command that takes
a pickle: train, evaluate, predict, data inspect, sweep, tune) reads it, told apart from a pickle
by its first bytes. Reading it runs no code: safetensors holds raw buffers, JSON holds plain values.
The tree is the pickle's own, key for key, so nothing MMSA's code reads is lost.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

FORMAT = "deepmlf-mmsa-safe/1"
_META_FORMAT, _META_TREE = "format", "tree"
_TENSOR_KINDS = "biuf"  # bool, signed, unsigned, float: what safetensors stores natively


def _encode(x: Any, tensors: dict[str, np.ndarray], where: str) -> Any:
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise DataError(f"{where}: key {bad[0]!r} is not a string; cannot convert")
        return {"k": "dict", "v": {k: _encode(v, tensors, f"{where}/{k}") for k, v in x.items()}}
    if isinstance(x, (list, tuple)):
        return {"k": "list" if isinstance(x, list) else "tuple", "v": [_encode(v, tensors, where) for v in x]}
    if isinstance(x, np.ndarray):
        if x.dtype.kind in _TENSOR_KINDS:
            name = f"t{len(tensors)}"
            tensors[name] = np.ascontiguousarray(x)
            return {"k": "tensor", "name": name}
        if x.dtype.kind in "US":
            return {"k": "array", "dtype": x.dtype.str, "shape": list(x.shape),
                    "v": [_encode(v, tensors, where) for v in x.reshape(-1).tolist()]}
        if x.dtype.kind == "O":
            return {"k": "array", "dtype": "object", "shape": list(x.shape),
                    "v": [_encode(v, tensors, where) for v in x.reshape(-1)]}
        raise DataError(f"{where}: arrays of dtype {x.dtype} cannot be converted")
    if isinstance(x, np.generic):
        return _encode(x.item(), tensors, where)
    if isinstance(x, bytes):
        return {"k": "bytes", "v": base64.b64encode(x).decode("ascii")}
    if isinstance(x, str):
        return x
    if x is None or isinstance(x, (bool, int, float)):
        return {"k": "num", "v": x}
    raise DataError(f"{where}: a {type(x).__name__} cannot be converted (expected arrays, lists, dicts, strings, numbers)")


def _decode(node: Any, tensors: dict[str, np.ndarray]) -> Any:
    if isinstance(node, str):
        return node
    kind = node["k"]
    if kind == "dict":
        return {k: _decode(v, tensors) for k, v in node["v"].items()}
    if kind in ("list", "tuple"):
        items = [_decode(v, tensors) for v in node["v"]]
        return items if kind == "list" else tuple(items)
    if kind == "tensor":
        return tensors[node["name"]]
    if kind == "array":
        values = [_decode(v, tensors) for v in node["v"]]
        if node["dtype"] == "object":
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out.reshape(node["shape"])
        return np.array(values, dtype=np.dtype(node["dtype"])).reshape(node["shape"])
    if kind == "bytes":
        return base64.b64decode(node["v"])
    if kind == "num":
        return node["v"]
    raise DataError(f"unknown node kind {kind!r}")


def write_safe(obj: Any, out: str | Path) -> Path:
    """Write an MMSA-layout object (as unpickled) to `out` atomically."""
    from safetensors.numpy import save_file

    from ..io import atomic_path

    tensors: dict[str, np.ndarray] = {}
    tree = _encode(obj, tensors, "<top>")
    out = Path(out)
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={_META_FORMAT: FORMAT, _META_TREE: json.dumps(tree)})
    return out


def read_safe(path: str | Path) -> Any:
    """The object `write_safe` wrote (a DataError for a safetensors file of another kind)."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
        if meta.get(_META_FORMAT) != FORMAT:
            raise DataError(f"{path}: a safetensors file, but not MMSA data from `deepmlf data convert` "
                            f"(format {meta.get(_META_FORMAT)!r}, expected {FORMAT!r})")
        tensors = load_file(str(path))
        return _decode(json.loads(meta[_META_TREE]), tensors)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a truncated or corrupt file
        raise DataError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
