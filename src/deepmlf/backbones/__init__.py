"""Frozen causal-LM backbones that resolve offline, behind one family-independent view.

`load_backbone(name_or_path, dtype=...)` accepts a built-in name (`smollm2-135m`, `tiny-gpt2`,
`tiny-llama`), a model directory, a `.gguf` file or a repo id already in the Hugging Face cache.
"""

from .adapter import FAMILIES, Backbone, BackboneSpec, Family, UnsupportedBackbone, prepare_tokenizer
from .loading import (
    BUILTIN_NAMES,
    BackboneInfo,
    Resolved,
    describe_backbone,
    hf_cache_dir,
    inspect_backbone,
    list_backbones,
    load_backbone,
    resolve_backbone,
)
from .tiny import TINY_NAMES, tiny_backbone, tiny_gpt2, tiny_llama

__all__ = [
    "BUILTIN_NAMES",
    "FAMILIES",
    "TINY_NAMES",
    "Backbone",
    "BackboneInfo",
    "BackboneSpec",
    "Family",
    "Resolved",
    "UnsupportedBackbone",
    "describe_backbone",
    "hf_cache_dir",
    "inspect_backbone",
    "list_backbones",
    "load_backbone",
    "prepare_tokenizer",
    "resolve_backbone",
    "tiny_backbone",
    "tiny_gpt2",
    "tiny_llama",
]
