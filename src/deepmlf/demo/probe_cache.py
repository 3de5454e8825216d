"""The demo's probe set, generated once under the demo's out dir and reused while its parameters hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.synth import make_probe, probe_noise_floor, save_probe
from ..io import write_json

PROBE_FILE = "unaligned_50.pkl"
PARAMS_FILE = "probe.json"
# Reference rows shown under the trained models (keys of probe_noise_floor), with their table names.
FLOOR_ROWS = {
    "oracle": "probe oracle (v, s, c known)",
    "text_only": "probe text-only oracle",
    "av_only": "probe AV-only oracle",
    "constant": "constant (median label)",
}


def ensure_probe(directory: Path, *, n: int, seed: int, preset: str, rule: str = "flip",
                 cues: str = "first") -> tuple[Path, dict[str, dict[str, float]], bool]:
    """(pickle path, noise floor per FLOOR_ROWS key, reused?). Regenerates when n/seed/preset (or
    the probe variant `rule` / `cues`, docs/probe-dataset.md) differ."""
    directory = Path(directory)
    path, params_path = directory / PROBE_FILE, directory / PARAMS_FILE
    params = {"n": n, "seed": seed, "preset": preset, "generator": "deepmlf.data.synth.make_probe"}
    if (rule, cues) != ("flip", "first"):  # the default probe's cache key stays what it was
        params.update(rule=rule, cues=cues)
    if path.is_file() and params_path.is_file():
        try:
            stored: dict[str, Any] = json.loads(params_path.read_text())
        except json.JSONDecodeError:
            stored = {}
        if stored.get("params") == params and isinstance(stored.get("noise_floor"), dict):
            return path, stored["noise_floor"], True
    data = make_probe(n=n, seed=seed, preset=preset, rule=rule, cues=cues)
    save_probe(path, data)
    floor = probe_noise_floor(n, seed, preset, data=data, rule=rule, cues=cues)
    floor = {k: {m: float(v) for m, v in floor[k].items()} for k in FLOOR_ROWS if k in floor}
    write_json(params_path, {"params": params, "noise_floor": floor})  # written last: marks the cache complete
    return path, floor, False
