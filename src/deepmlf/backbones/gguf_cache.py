"""De-quantise a GGUF checkpoint once and keep the float weights as a safetensors directory.

transformers reads a `.gguf` file offline (`from_pretrained(dir, gguf_file=name)`, needs `gguf`
and `accelerate`), but it de-quantises every tensor on each load (~25 s for SmolLM2-135M on
2 cores). We pay that once: the model and tokenizer are saved with `save_pretrained` under the
deepmlf cache (`$DEEPMLF_CACHE`, else `~/.cache/deepmlf`) and later loads read the safetensors.

The cache directory is written to a temporary sibling and renamed into place, so an interrupted
first load never leaves a half cache; a directory that lacks any expected file is rebuilt.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import BackboneError

logger = logging.getLogger(__name__)

CACHE_ENV = "DEEPMLF_CACHE"
SOURCE_FILE = "deepmlf_source.json"  # what the cache was built from; written last, so it marks completeness
# A cache is complete when all of these exist (tokenizer.json: every GGUF tokenizer converts to a fast one).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", SOURCE_FILE)


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """`from_pretrained`'s dtype keyword: `dtype` since transformers 4.56, `torch_dtype` before."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


def cache_root() -> Path:
    """`$DEEPMLF_CACHE` or `~/.cache/deepmlf`, read at call time (tests point it elsewhere)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/deepmlf").expanduser()


def backbone_cache_dir(key: str) -> Path:
    return cache_root() / "backbones" / key


def gguf_cache_key(gguf_path: Path) -> str:
    """A cache key for an arbitrary GGUF file: its stem plus a hash of its absolute path and size."""
    import hashlib

    st = gguf_path.stat()
    digest = hashlib.sha1(f"{gguf_path.resolve()}|{st.st_size}".encode()).hexdigest()[:10]
    return f"gguf-{gguf_path.stem}-{digest}"


def read_source(cache_dir: Path) -> dict | None:
    try:
        return json.loads((cache_dir / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_valid_cache(cache_dir: Path, gguf_path: Path | None = None) -> bool:
    """All expected files present and, when the GGUF file is known, built from a file of its size."""
    if not all((cache_dir / f).is_file() for f in REQUIRED_FILES):
        return False
    source = read_source(cache_dir)
    if source is None:
        return False
    if gguf_path is not None and gguf_path.is_file() and source.get("gguf_size") != gguf_path.stat().st_size:
        return False  # the GGUF file changed (e.g. a new package version): rebuild
    return True


def dequantise_gguf(gguf_path: Path) -> tuple[torch.nn.Module, object]:
    """Load a GGUF file with transformers as a plain float32 model plus its tokenizer (slow)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, local_files_only=True, **dtype_kwarg(torch.float32)
        )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BackboneError(
            f"transformers could not read the GGUF file {gguf_path}: {e}. Its architecture must be one "
            f"transformers converts from GGUF (llama, mistral, qwen2, gpt2, ...), and the `gguf` package "
            f"must be installed (`pip install gguf`)."
        ) from e
    # A GGUF-loaded model carries a quantizer that refuses `save_pretrained`, even when every weight
    # was unpacked. Copy the weights into a plain model of the same config; strict loading proves
    # that no tensor stayed packed.
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, **dtype_kwarg(torch.float32))
    plain.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    return plain.eval(), tokenizer


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished `tmp` to `final`; an old invalid `final` is moved aside first, then deleted."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / final.name)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)


def build_cache(gguf_path: Path, cache_dir: Path) -> Path:
    """De-quantise `gguf_path` and save it to `cache_dir` atomically; returns `cache_dir`."""
    import transformers

    logger.info("de-quantising %s once (about 25 s for SmolLM2-135M); caching it in %s", gguf_path, cache_dir)
    model, tokenizer = dequantise_gguf(gguf_path)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.tmp-", dir=cache_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); the cache is an ordinary directory
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {
            "gguf_file": str(gguf_path.resolve()),
            "gguf_size": gguf_path.stat().st_size,
            "transformers": transformers.__version__,
            "dtype": "float32",
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        try:
            _replace_dir(tmp, cache_dir)
        except OSError:
            # Another process finished the same cache first: keep theirs if it is complete.
            if not is_valid_cache(cache_dir, gguf_path):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if not is_valid_cache(cache_dir, gguf_path):
        raise BackboneError(f"the de-quantised cache {cache_dir} is incomplete after writing it; is the disk full?")
    return cache_dir


def ensure_cache(gguf_path: Path, cache_dir: Path) -> Path:
    """The valid cache directory for `gguf_path`, built on first use."""
    if is_valid_cache(cache_dir, gguf_path):
        return cache_dir
    return build_cache(gguf_path, cache_dir)
