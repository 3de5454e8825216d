"""Model architectures by name: the one place a model is chosen (`model.arch`) and built.

An `Arch` says what it is built from and for:
  * `build(cfg, *, dims, backbone)`: returns the module. `cfg` is whatever config object the
    arch's runner holds (the MSA `Config` for "deepmlf"; ERC has its own tree): the registry
    never looks inside it. `dims` maps each input to its feature width (MSA: {"audio": Da,
    "vision": Dv}); `backbone` is the loaded language model when `needs_backbone`, else None;
  * `task`: the name of the task it serves (`deepmlf.tasks.TASKS`), checked by the runner;
  * `inputs`: the modalities its batches must carry (declarative; the runner checks them);
  * `av_pretraining`: the MSA runner pre-trains `cfg.model.av_encoder` first (stage 1) when
    its `init` asks for it;
  * `check_backbone(cfg, spec)`: for a `needs_backbone` arch, the checks of `cfg` against the
    backbone's `BackboneSpec` (its config and tokenizer, no weights); runners call it before
    anything trains (`deepmlf.train.preflight`).

The module's forward takes one batch and returns a dataclass with `.loss` (None for unlabelled
batches), `.loss_terms` (name -> unweighted scalar) and `.prediction` (regression: (N,);
classification: logits (N, C)); the module offers `trainable_state_dict()`,
`load_trainable_state_dict(sd)` and `parameter_counts()` (docs/contracts.md, "Models").

Register a new arch with `register_arch(Arch(...))` in the module that defines its builder, and
add that module to `ARCH_MODULES` so lookups find it without the caller importing it first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import ConfigError

# Modules whose import registers arches (imported on the first lookup). One line per new arch module.
ARCH_MODULES: tuple[str, ...] = (
    "deepmlf.model.build",  # deepmlf
    "deepmlf.model.umca",  # umca
    "deepmlf.model.magt",  # magt, concat (ERC stage 2)
    "deepmlf.model.erc_stage1",  # erc-utterance-head (ERC stage 1)
)

Builder = Callable[..., nn.Module]  # build(cfg, *, dims: Mapping[str, int], backbone) -> nn.Module


@dataclass(frozen=True)
class Arch:
    name: str  # the value of `model.arch`
    task: str  # the task it serves: "msa", "erc", ...
    build: Builder
    inputs: tuple[str, ...] = ("text", "audio", "vision")
    needs_backbone: bool = False  # the runner loads the backbone (`model.backbone`) and passes it
    av_pretraining: bool = False  # MSA runner: stage 1 pre-trains model.av_encoder first
    check_backbone: Callable[[Any, Any], None] | None = None  # (cfg, BackboneSpec) -> raises ConfigError
    display_name: str = ""  # in logs and reports ("DeepMLF"); defaults to `name`
    description: str = ""

    @property
    def label(self) -> str:
        return self.display_name or self.name


_ARCHS: dict[str, Arch] = {}
_loaded = False


def register_arch(arch: Arch) -> Arch:
    """Add `arch` under its name; a second registration of the same name is an error."""
    if arch.name in _ARCHS and _ARCHS[arch.name] != arch:
        raise ValueError(f"model arch {arch.name!r} is already registered")
    _ARCHS[arch.name] = arch
    return arch


def unregister_arch(name: str) -> None:
    """Remove an arch (tests that register their own)."""
    _ARCHS.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in ARCH_MODULES:
            importlib.import_module(module)


def known_arches() -> list[str]:
    _load_builtin()
    return sorted(_ARCHS)


def get_arch(name: str, *, task: str | None = None, option: str = "model.arch") -> Arch:
    """The arch called `name`; ConfigError naming `option` and listing the known ones (or when it
    serves another task than `task`)."""
    _load_builtin()
    arch = _ARCHS.get(name)
    if arch is None:
        raise ConfigError(f"{option}={name!r}: unknown model architecture; known: {', '.join(known_arches())}")
    if task is not None and arch.task != task:
        same = [a for a in known_arches() if _ARCHS[a].task == task]
        raise ConfigError(
            f"{option}={name!r} is a model for the {arch.task!r} task, not {task!r}; "
            f"choose one of {', '.join(same) or '(none registered)'}"
        )
    return arch


def build_arch(name: str, cfg: Any, *, dims: Mapping[str, int], backbone: Any = None,
               task: str | None = None, option: str = "model.arch") -> nn.Module:
    """Build the arch called `name` (the one place models are built from a config)."""
    arch = get_arch(name, task=task, option=option)
    if arch.needs_backbone and backbone is None:
        raise ConfigError(f"{option}={name!r} needs a language-model backbone, none was loaded")
    return arch.build(cfg, dims=dims, backbone=backbone)
