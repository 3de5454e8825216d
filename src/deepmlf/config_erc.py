"""Typed configuration of emotion recognition in conversation (MAGTKD, seed 004): its own tree.

    data     which conversations and which per-utterance feature files (text from `deepmlf erc extract`)
    stage1   text teacher head, audio/video students, KD (eq. 6-14); writes the stage-2 features
    model    the stage-2 arch (`magt`, `concat`) and its switches (eq. 15-23)
    loss     L = CE + α L_KD^a + β L_KD^v (eq. 24-25)
    train    optimiser, epochs, selection (always on the valid split), seeds

The paper's settings are the defaults where it states them; every behaviour of the authors' code
(notes/neighbour-systems.md §1.2) is a switch, off by default; the `erc-authors` overlay (a
preset deriving from erc-meld) turns them on. Presets: erc-meld, erc-iemocap, erc-demo.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from .config import _deep_merge, _format_validation_error, _Strict, apply_overrides, load_yaml, read_yaml
from .errors import ConfigError

ERC_PRESETS = ("erc-meld", "erc-iemocap", "erc-demo", "erc-authors")
Modality = Literal["text", "audio", "video"]


class ERCDataConfig(_Strict):
    path: str | None = None  # a conversation file/folder (deepmlf.data.erc formats)
    source: str = "auto"  # meld-csv | cosmic-pkl | dialoguernn-pkl | merbench-npz | magtkd-pkl
    classes: str | list[str] | None = None  # the order labels are indexed in (default: the format's)
    label_order: str | list[str] | None = None  # what the file's integer labels mean (default: the format's)
    speaker_mode: Literal["global", "per_dialogue"] | None = None  # default: global (MELD), per dialogue (IEMOCAP)
    name: str | None = None  # shown in titles ("meld")
    # modality -> per-utterance feature file (.npz ids/X or a {key: vector} pickle); `text` from
    # `deepmlf erc extract`; audio/video from the user. Features the data file carries itself
    # (DialogueRNN/MAGTKD pickles) need no entry.
    features: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(16, ge=1)  # dialogues per batch (authors: 16)
    eval_batch_size: int = Field(32, ge=1)


class KDConfig(_Strict):
    tau: float = Field(2.0, gt=0)  # eq. 7-9 temperature (authors: 2)
    beta_inter: float = Field(1.0, ge=0)  # weight of the per-sample (row) term of eq. 9
    gamma_intra: float = Field(1.0, ge=0)  # weight of the per-class (column) term of eq. 9
    tau_feat: float = Field(1.0, gt=0)  # eq. 10-12 temperature
    w_logit: float = Field(1.0, ge=0)  # stage 1: weight of L_s (paper 1; authors' MELD 0.1)
    w_feat: float = Field(1.0, ge=0)  # stage 1: weight of L_f (paper 1; authors' IEMOCAP 0)


class Stage1Config(_Strict):
    enabled: bool = True  # False: stage 2 reads the features as given (text raw, no students)
    d_feature: int = Field(256, ge=1)  # width of the stage-1 features written for stage 2 (paper 768)
    dropout: float = Field(0.1, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(20, ge=1)
    early_stop: int = Field(5, ge=1)
    kd: KDConfig = Field(default_factory=KDConfig)


class MAGTConfig(_Strict):
    arch: str = "magt"  # registered erc arch: magt | concat
    modalities: list[Modality] = Field(default_factory=lambda: ["text", "audio", "video"])
    # Which stage-1 feature each of audio/video reads: the KD student's ("kd", Fig. 2: T + A_KD + V_KD)
    # or the CE-only student's ("raw"); Table 3's four rows. Authors' IEMOCAP: video raw.
    audio_input: Literal["kd", "raw"] = "kd"
    video_input: Literal["kd", "raw"] = "kd"
    d_model: int = Field(768, ge=1)
    n_heads: int = Field(8, ge=1)
    n_layers: int = Field(1, ge=1)  # transformer blocks per anchor branch (authors: 1)
    d_ff: int | None = None  # FFN width (None = d_model, as the authors)
    dropout: float = Field(0.5, ge=0, lt=1)
    gate: Literal["sigmoid", "sigmoid_relu", "none"] = "sigmoid"  # eq. 21 | authors' σ(ReLU(·)) | no gate
    share_text_anchor: bool = False  # authors: one encoder + gate for t->t, A'->t and V'->t
    speaker_embedding: bool = True  # eq. 17
    position_embedding: bool = True  # eq. 15-16
    n_speakers: int | None = None  # speaker table size (None = from the data)

    @model_validator(mode="after")
    def _check(self) -> "MAGTConfig":
        if "text" not in self.modalities:
            raise ValueError("model.modalities must include 'text' (the text head is the prediction, eq. 23)")
        if self.d_model % self.n_heads:
            raise ValueError(f"model.n_heads={self.n_heads} must divide model.d_model={self.d_model}")
        return self


class ERCLossConfig(_Strict):
    alpha: float = Field(0.01, ge=0)  # eq. 25, audio (paper MELD 0.01; IEMOCAP 0.7)
    beta: float = Field(0.09, ge=0)  # eq. 25, video (paper MELD 0.09, authors' code 0.08; IEMOCAP 0.8)
    # eq. 24: L_KD^i = L_f + L_s ("feat", "logit"); authors: MELD ce+logit, IEMOCAP ce+logit+feat.
    kd_terms: list[Literal["ce", "logit", "feat"]] = Field(default_factory=lambda: ["logit", "feat"])
    detach_teacher: bool = True  # authors: False (KD gradients reach the text branch)


class ERCTrainConfig(_Strict):
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    epochs: int = Field(30, ge=1)
    early_stop: int = Field(10, ge=1)
    clip_norm: float | None = Field(10.0, gt=0)
    warmup_epochs: float = Field(1.0, ge=0)  # linear warm-up, then linear decay (not the authors' len(dataset) quirk)
    key_metric: Literal["weighted_f1", "acc", "macro_f1", "Loss"] = "weighted_f1"  # on the valid split, always
    seeds: list[int] = Field(default_factory=lambda: [1111], min_length=1)
    limit_batches: int | None = Field(None, ge=1)  # smoke runs


class ERCConfig(_Strict):
    data: ERCDataConfig = Field(default_factory=ERCDataConfig)
    stage1: Stage1Config = Field(default_factory=Stage1Config)
    model: MAGTConfig = Field(default_factory=MAGTConfig)
    loss: ERCLossConfig = Field(default_factory=ERCLossConfig)
    train: ERCTrainConfig = Field(default_factory=ERCTrainConfig)


def erc_preset_dict(name: str) -> dict[str, Any]:
    if name not in ERC_PRESETS:
        raise ConfigError(f"unknown ERC preset {name!r}; choose one of {', '.join(ERC_PRESETS)}")
    tree = load_yaml(resources.files("deepmlf.presets").joinpath(f"{name}.yaml").read_text()) or {}
    base = tree.pop("preset", None)
    return _deep_merge(erc_preset_dict(base), tree) if base else tree


def erc_config_from_dict(tree: dict[str, Any], source: str = "<dict>") -> ERCConfig:
    try:
        return ERCConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def load_erc_config(path: str | Path | None = None, *, preset: str | None = None,
                    overrides: list[str] | None = None) -> ERCConfig:
    """Preset (optional) <- YAML file (optional, may name `preset:`) <- `--set` overrides."""
    file_tree = read_yaml(path) if path is not None else {}
    preset = preset or file_tree.pop("preset", None)
    tree: dict[str, Any] = erc_preset_dict(preset) if preset else {}
    _deep_merge(tree, file_tree)
    apply_overrides(tree, overrides)
    src = ", ".join(s for s in (f"preset {preset}" if preset else "", str(path or ""),
                                "--set " + " ".join(overrides) if overrides else "") if s)
    return erc_config_from_dict(tree, src or "defaults")
