"""Typed configuration for DeepMLF: one tree, validated once at the edge.

The tree mirrors the paper's knobs (DESIGN.md §1-§2); every ablation axis of Tables 6-13 is a
field here. `load_config` is the only way a YAML file plus `--set key=value` overrides becomes a
`Config`; everything below the CLI receives plain, already-validated objects.

Checks that need the backbone (an `mm_layers` index against the layer count, head count against
the width, text + fusion tokens against the position table) live in `check_against_backbone`; a
run calls it before stage 1 on the backbone's config alone (`deepmlf.train.preflight`), and
`build_model` again on the loaded backbone.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


class _Yaml12BoolLoader(yaml.SafeLoader):
    """SafeLoader that reads only true/false as booleans (YAML 1.2), so `ffw: off` stays "off"."""


_Yaml12BoolLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12BoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse YAML text for configs, sweep specs and --set values (yes/no/on/off stay strings)."""
    return yaml.load(text, Loader=_Yaml12BoolLoader)

Dataset = Literal["mosi", "mosei", "sims", "simsv2"]
DATASET_INFER = "infer"  # data.dataset default: the file decides (deepmlf.data.corpora.infer_dataset)
Tracker = Literal["tensorboard", "wandb", "comet_ml", "aim", "mlflow", "clearml", "dvclive", "swanlab"]
PRESETS = ("mosi", "mosei-base", "mosei-large", "sims", "simsv2", "demo", "demo-missing")


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a sweep spec must not silently train the default.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    path: str | None = None  # MMSA processed pickle (aligned_50.pkl / unaligned_50.pkl / unaligned_39.pkl)
    # Decides the label range and which MMSA metrics are reported. "infer": the file decides (feature
    # dims, SIMS's regression_labels_T/A/V, label range) and the run says what it found; a named
    # dataset is checked against the file, and a contradiction is an error naming both.
    dataset: Literal["infer", "mosi", "mosei", "sims", "simsv2"] = DATASET_INFER
    max_text_len: int = Field(50, ge=2)  # right-pad/truncate transcripts to this many tokens (50 MOSI/MOSEI, 39 SIMS)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(0, ge=0)
    # Stage-2 training: each transcript is emptied (text missing, deepmlf.data.missing) with this
    # probability per sample and step; the baseline for text-missing robustness without distillation.
    text_dropout: float = Field(0.0, ge=0.0, le=1.0)
    # Training batches of similar transcript lengths (0 = off: plain shuffling): each epoch's random
    # order is cut into windows of this many batches, each sorted by length (issue 14). With
    # perf.dynamic_padding a batch then runs at about its own length. Not exact: it changes which
    # samples share a batch (every sample still once per epoch); docs/performance.md.
    length_grouped: int = Field(0, ge=0)


class SoftPermConfig(_Strict):
    # The authors' AV SoftPerm (SoftPerm_Fast): SeqAug on the raw audio and raw vision frames, at every
    # training step of both stages (no p_apply). Not in the paper; docs/authors-regularisers.md.
    p_perm: float = Field(0.0, ge=0.0, le=1.0)  # fraction of feature channels taken from the permuted frames; 0 = off
    # per_sample (ours): each sample's real frames are permuted among themselves, padding untouched;
    # per_batch (authors): one permutation of all L frames, padding included, shared by the batch.
    permutation: Literal["per_sample", "per_batch"] = "per_sample"


class AVEncoderConfig(_Strict):
    d_av: int = Field(30, ge=1)  # AV width (paper: 30)
    av_len: int = Field(50, ge=1)  # steps after length-aware average pooling (50 MOSI/MOSEI, 55 SIMS)
    n_layers: int = Field(3, ge=1)  # TransformerEncoder layers per modality
    n_heads: int = Field(6, ge=1)
    ffn_mult: int = Field(4, ge=1)  # FFN width = ffn_mult * d_av
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    batchnorm: bool = False  # BatchNorm1d on raw features before the projection (SIMS)
    softperm: SoftPermConfig = Field(default_factory=SoftPermConfig)  # AV SoftPerm on raw frames (authors' code)
    # Table 8: where the stage-2 encoder starts and whether it keeps training.
    init: Literal["pretrain_tune", "pretrain_freeze", "random_tune"] = "pretrain_tune"
    checkpoint: str | None = None  # stage-1 checkpoint; None with a pretrain_* init -> stage 1 runs first

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "AVEncoderConfig":
        if self.d_av % self.n_heads:
            raise ValueError(f"av_encoder.d_av={self.d_av} must be divisible by av_encoder.n_heads={self.n_heads}")
        return self


class LoRAConfig(_Strict):
    r: int = Field(64, ge=1)
    alpha: float = Field(128.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)


class RationaleConfig(_Strict):
    """A generated rationale beside the score (MulCoT-RD, adapted; docs/rationale.md). Off: DeepMLF as is.

    After the fusion tokens, `prompt` and the rationale are fed to (training) or generated by
    (explain/predict) the frozen LM's own head, continuing its positions and KV cache. The MM
    blocks treat these tokens as text (no cross-attention to the AV memory), so they read audio and
    video only through the fusion tokens (the frozen attention; with `readout: fusion` also a
    trainable cross-attention to each MM layer's fusion states); the transcript tokens still cannot.
    """

    enabled: bool = False
    path: str | None = None  # teacher rationales: JSONL {"id", "rationale"} (MulCoT-RD's "cot" accepted)
    prompt: str = "\nRationale:"  # fed after the fusion tokens, before the rationale
    max_len: int = Field(48, ge=1)  # rationale tokens (eos included): training truncation, generation bound
    lambda_rat: float = Field(1.0, ge=0.0)  # weight of the rationale's token CE (+ KD) in the loss
    # MulCoT-RD's second task: the label-only target "Prediction: <score>" (one more LM pass per step).
    label_task: bool = False
    lambda_label: float = Field(1.0, ge=0.0)
    # LoRA on the query/value projections of the last `lora_layers` decoder layers, applied to the
    # prompt and rationale tokens only (text and fusion states are untouched). 0 = none.
    lora_layers: int = Field(0, ge=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    # Token-level KD from a trained assistant (its best.pt; it must share the tokenizer and prompt):
    # kd_ce_weight · CE + kd_weight · [T²] KL(assistant ‖ student) at kd_temperature (MulCoT-RD: 0.7, 0.3, 2, no T²).
    teacher_checkpoint: str | None = None
    kd_ce_weight: float = Field(0.7, ge=0.0)
    kd_weight: float = Field(0.3, ge=0.0)
    kd_temperature: float = Field(2.0, gt=0.0)
    kd_t2: bool = False
    # Keep the frozen states of [fusion ‖ prompt ‖ rationale] up to the first MM block across
    # epochs (teacher forcing: per sample they are a function of the transcript, the frozen fusion
    # tokens and the teacher rationale), so a step runs those tokens through the layers above the
    # first MM block only. Exact; needs model.text_cache (its conditions) and
    # model.fusion_trainable=false (nothing trainable below the first MM block). Shared by every
    # model of the process on the same backbone (deepmlf.model.multimodal_lm.SuffixStateCache).
    prefix_cache: bool = False
    # The MM blocks' FFW (eq. 11) also updates the prompt and rationale tokens (token-wise: they still
    # reach AV only through the fusion tokens) when model.ffw_tokens=fusion keeps it off the transcript.
    suffix_ffw: bool = False
    # A trainable read-out from the fusion tokens into the suffix (deepmlf.model.mm_block.FusionReadout):
    # none = the suffix reads the fusion tokens through the frozen attention only; fusion = in every
    # MM layer the prompt/rationale tokens also cross-attend (gated, the MM block's GCA) to that
    # layer's fusion-token states, never to the AV memory itself, so AV still reaches the text only
    # through the fusion tokens and the transcript never. docs/rationale.md, "The read-out".
    readout: Literal["none", "fusion"] = "none"
    # Its gate's raw parameter at init (None = model.gate_init). With model.gate=tanh, 0 closes the gate
    # and then only the gate itself gets a gradient at the first step.
    readout_gate_init: float | None = None
    # The constant on the read-out branch (None = model.gca_scale): the suffix's residual stream is
    # hundreds of times a fresh projection's output, as for the MM blocks' GCA.
    readout_scale: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _needs_rationales(self) -> "RationaleConfig":
        if self.enabled and not self.path:
            raise ValueError("model.rationale.enabled needs model.rationale.path (a JSONL of teacher rationales)")
        return self


class AugmentConfig(_Strict):
    # Table 12: language-embedding augmentation, applied in training only.
    kind: Literal["seqaug", "dropout", "noise", "none"] = "seqaug"
    p_apply: float = Field(0.3, ge=0.0, le=1.0)  # probability that a batch is augmented at all
    p_perm: float = Field(0.2, ge=0.0, le=1.0)  # SeqAug: fraction of channels taken from the permuted sequence
    # SeqAug's permutation: per_sample (ours) permutes each sample's real tokens, pads stay; per_batch
    # (authors) draws one permutation of all T positions, pads included, for the whole batch.
    permutation: Literal["per_sample", "per_batch"] = "per_sample"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # `dropout` kind: embedding dropout probability
    noise_std: float = Field(0.1, ge=0.0)  # `noise` kind: Gaussian std relative to the embedding RMS


class DoubleFlowConfig(_Strict):
    """SDUMC's double-flow self-distillation (arXiv 2410.15029) on DeepMLF; docs/missing-modalities.md.

    Per batch the same network runs the full flow (real transcript) and a text-missing flow in which
    `imagined_tokens` tokens made from the AV memory stand in place of the transcript in the frozen LM:
    L = w_full L_DeepMLF + w_missing L_task(y^M) + λ_mkd RMSE(x_tK^M, sg x_tK^F) + λ_query RMSE(x̄_f^M, sg x̄_f^F)
        + λ_rs RMSE(h^M, h^F) + λ_rnc RnC([r^F, r^M], y; τ).
    """

    enabled: bool = False
    imagined_tokens: int = Field(8, ge=1)  # n_i tokens in place of the transcript
    mia: bool = False  # modality imagination autoencoder on the missing flow's text state (identity at init)
    mia_hidden: int = Field(128, ge=2)
    mia_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    w_full: float = Field(1.0, ge=0.0)  # SDUMC: 0.5 / 0.5
    w_missing: float = Field(1.0, ge=0.0)
    lambda_mkd: float = Field(0.1, ge=0.0)  # text-side state (SDUMC default 0.1; its active run 0)
    lambda_query: float = Field(0.7, ge=0.0)  # query-side state x̄_f (SDUMC default 0.7; its active run 0)
    lambda_rs: float = Field(0.13, ge=0.0)  # final features h, not detached (SDUMC active run 0.13)
    lambda_rnc: float = Field(0.0, ge=0.0)  # Rank-N-Contrast over the two flows (SDUMC active run 0.5)
    rnc_tau: float = Field(2.0, gt=0.0)
    rnc_dim: int = Field(64, ge=1)  # r = MLP(h -> rnc_dim -> rnc_dim)
    task_loss: Literal["l1", "mse"] = "l1"  # missing-flow task loss (DeepMLF's L1; SDUMC MSE)
    # The task head's BatchNorm: "full" = running statistics from the full flow only, the missing flow
    # normalised by the full batch's statistics in training; "per_flow" = each flow its own batch,
    # both updating the running statistics (the first version; docs/missing-modalities.md).
    head_bn: Literal["full", "per_flow"] = "full"
    rs_detach: bool = False  # L_RS: stop-gradient on the full flow's h (True) or both sides move (SDUMC, False)


class UMCAConfig(_Strict):
    # model.arch: umca (deepmlf.model.umca); SDUMC's general_dim 256, its UMCA output 128.
    d: int = Field(128, ge=2)  # width of the projected frames, utterance vectors and queries
    d_out: int = Field(64, ge=1)  # width of the UMCA outputs and the final feature f
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # SDUMC: 0.5


class ModelConfig(_Strict):
    arch: str = "deepmlf"  # which model (deepmlf.model.registry); the fields below are DeepMLF's
    backbone: str = "smollm2-135m"  # built-in name, local directory or HF-cache id (never downloaded)
    mm_layers: list[int] = Field(default_factory=lambda: [25, 26, 27, 28, 29])  # 0-based: MM block after these layers
    n_fusion: int = Field(12, ge=1)  # n_f learnable fusion tokens (Fig. 3)
    n_heads: int = Field(16, ge=1)  # cross-attention heads (must divide the LM width)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # on cross-attention probabilities and output
    gate: Literal["sigmoid", "tanh", "none"] = "sigmoid"  # Table 13
    gate_init: float = 0.0  # raw gate parameter a at init: sigmoid(0)=0.5, tanh(0)=0
    gca_query: Literal["fusion", "text+fusion", "text"] = "fusion"  # Table 10: who queries the AV memory
    # Constant on the cross-attention branch g1·GCA (1 = eq. 9): deep layers' residual stream is
    # ~10^3 times a fresh GCA output (docs/deep-fusion.md), so the AV memory barely reaches the heads.
    gca_scale: float = Field(1.0, gt=0.0)
    # Which tokens the MM block's FFW updates: all (eq. 11, text and fusion) or fusion only (text
    # tokens stay the frozen LM's states; docs/deep-fusion.md).
    ffw_tokens: Literal["all", "fusion"] = "all"
    # Std of the fusion tokens' normal init (eq. 7; 0.02 = ours and the authors'), or "embedding":
    # the RMS of the LM's token-embedding table, so they enter the stream at the scale of a word.
    fusion_init_std: float | Literal["embedding"] = 0.02
    # false: the fusion tokens' input embeddings (eq. 7) stay at their random init; the MM blocks
    # still write AV into the fusion stream. Then nothing below the first MM block trains, so the
    # states there can be cached (model.rationale.prefix_cache).
    fusion_trainable: bool = True
    ffw: Literal["full", "lora", "random", "off"] = "full"  # Table 10 (off) and DESIGN.md §1
    lora: LoRAConfig = Field(default_factory=LoRAConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    av_encoder: AVEncoderConfig = Field(default_factory=AVEncoderConfig)
    head_hidden: int = Field(64, ge=1)  # task head g: Linear(2D+d_av -> head_hidden) -> BN -> ReLU -> Linear(->1)
    dtype: Literal["float32", "bfloat16"] = "float32"  # dtype of the frozen backbone weights
    # The frozen backbone's own dropout (GPT-2: 0.1) in training. The authors' model.train() leaves it
    # on; off (ours) keeps the backbone a fixed function, so "closed gates == the frozen LM" holds.
    backbone_dropout: bool = False
    # Keep the frozen LM's text states (per-layer keys/values, final states) across epochs and
    # evaluations (deepmlf.model.multimodal_lm.TextStateCache). Exact, and allowed only where
    # nothing trainable touches text: gca_query fusion, ffw_tokens fusion (or ffw off), no
    # augmentation, backbone_dropout off. Then a step runs only the K fusion tokens through the LM.
    text_cache: bool = False
    # Its memory budget in MiB (and again for the cached fusion-token and rationale-prefix states):
    # past it, new transcripts are recomputed each time instead of stored. SmolLM2-135M, 16 tokens:
    # ~0.8 MB per transcript.
    text_cache_mb: int = Field(4096, ge=1)
    # Keep only the first N decoder layers of the backbone (a smaller student sharing the tokenizer;
    # the final norm and LM head follow layer N-1). None = all layers.
    backbone_layers: int | None = Field(None, ge=1)
    rationale: RationaleConfig = Field(default_factory=RationaleConfig)  # off by default

    @model_validator(mode="after")
    def _mm_layers_inside_backbone_layers(self) -> "ModelConfig":
        if self.backbone_layers is not None and self.mm_layers[-1] >= self.backbone_layers:
            raise ValueError(f"model.mm_layers={self.mm_layers}: every index must be below "
                             f"model.backbone_layers={self.backbone_layers}")
        return self
    double_flow: DoubleFlowConfig = Field(default_factory=DoubleFlowConfig)  # text-missing self-distillation
    umca: UMCAConfig = Field(default_factory=UMCAConfig)  # model.arch: umca only

    @field_validator("mm_layers")
    @classmethod
    def _layers_sorted_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("model.mm_layers must name at least one decoder layer (0-based)")
        if any(i < 0 for i in v):
            raise ValueError(f"model.mm_layers={v}: indices are 0-based and must be >= 0")
        if len(set(v)) != len(v):
            raise ValueError(f"model.mm_layers={v}: an index appears twice")
        return sorted(v)


class LossConfig(_Strict):
    # Eq. 14: L = L1(y_o) + λ_f L1(y_f) + λ_av L1(y_av) + λ_t L1(y_t) + λ_LM CE
    lambda_f: float = Field(1.0, ge=0.0)
    lambda_av: float = Field(1.0, ge=0.0)
    lambda_t: float = Field(1.0, ge=0.0)
    lambda_lm: float = Field(1.0, ge=0.0)


class TrainConfig(_Strict):
    lr: float = Field(1e-4, gt=0)  # MM blocks, fusion tokens, heads
    lr_av: float = Field(1e-4, gt=0)  # AV encoder group
    # Per-part lr factors on `lr` (parts of the model's `lr_parts()`; DeepMLF: gates, gca, ffw,
    # norms, fusion_tokens, heads, double_flow), e.g. {gates: 30}: each part gets its own AdamW groups. Empty = one lr.
    lr_parts: dict[str, float] = Field(default_factory=dict)
    weight_decay: float = Field(0.005, ge=0)
    weight_decay_av: float = Field(0.005, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_accum: int = Field(8, ge=1)  # mini-batches per optimiser step (32 x 8 = 256 in the authors' configs)
    warmup_epochs: float = Field(1.0, ge=0)  # linear warm-up, then cosine to min_lr
    min_lr: float = Field(1e-7, ge=0)
    # cosine: one cosine from lr to min_lr at the end of max_epochs. cosine_restarts (authors): cosine
    # with warm restarts of period (max_epochs + 1) epochs - warm-up (CosineAnnealingWarmRestarts).
    lr_schedule: Literal["cosine", "cosine_restarts"] = "cosine"
    # False (authors): max_epochs only shapes the schedule and training stops by early stopping alone.
    stop_at_max_epochs: bool = True
    max_epochs: int = Field(15, ge=1)
    early_stop: int = Field(10, ge=1)  # epochs without validation improvement before stopping
    clip_grad: float | None = Field(5.0, gt=0)  # clip threshold on non-AV parameters; None disables
    clip_mode: Literal["value", "norm"] = "value"  # authors clip by value (5.0) and leave the AV encoder alone
    key_metric: str = "MAE"  # validation metric for model selection: an MMSA metric name or "Loss"
    seeds: list[int] = Field(default_factory=lambda: [1111], min_length=1)
    mixed_precision: Literal["no", "bf16", "auto"] = "auto"  # auto: bf16 on a GPU that supports it
    max_steps: int | None = Field(None, ge=1)  # optimiser-step cap (smoke runs); None = epochs decide
    limit_batches: int | None = Field(None, ge=1)  # cap mini-batches per epoch and split (smoke runs)
    # Experiment trackers of accelerate, off by default; logs go to RUN_DIR/tracking (tensorboard needs no network).
    log_with: list[Tracker] = Field(default_factory=list)

    @field_validator("lr_parts")
    @classmethod
    def _positive_factors(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: f for k, f in v.items() if not f > 0}
        if bad:
            raise ValueError(f"train.lr_parts factors must be > 0, got {bad}")
        return v

    @field_validator("log_with", mode="before")
    @classmethod
    def _one_tracker_is_a_list(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no_is_false(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `no` (in a file or `--set train.mixed_precision=no`) as False.
        return "no" if v is False else v


class PretrainConfig(_Strict):
    # Stage 1: AV encoder + scalar head, L1 on the label (authors' BI_ENC recipe).
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_accum: int = Field(4, ge=1)
    max_epochs: int = Field(100, ge=1)
    early_stop: int = Field(8, ge=1)
    plateau_patience: int = Field(10, ge=1)  # ReduceLROnPlateau(factor 0.1) on validation loss
    clip_grad: float | None = Field(1.0, gt=0)
    # The stage-1 model's readout: masked mean of Z (ours) or its last real step (authors' BI_ENC).
    readout: Literal["mean", "last"] = "mean"
    # True (authors): stage 1 runs once (first seed) into RUN_DIR/stage1/ and every seed's stage 2
    # starts from that one checkpoint; False: each seed pre-trains its own (seed-S/stage1/).
    shared: bool = False


class PerfConfig(_Strict):
    # Speed/memory switches (issue 14, benchmarks/RESULTS.md). Off by default; the exact ones leave
    # outputs and gradients equal to the default path (tests/model/test_perf.py).
    # Run the LM over the batch's longest transcript, not data.max_text_len (fusion tokens keep
    # their positions max_text_len.., so the numbers are the same). lm_logits then cover that width.
    dynamic_padding: bool = False
    # LM loss on real positions only, in chunks of this many tokens (each chunk's gradient formed in
    # forward; recomputed in backward under bf16 autocast): the (tokens x vocabulary) matrix never
    # exists whole. 0 = off (full logits,
    # returned as lm_logits); on, lm_logits is None.
    lm_loss_chunk: int = Field(0, ge=0)
    # Cache the frozen layers' text states before the first MM block (their KV and the output under
    # it), keyed by the token ids, for batches that are not augmented and run without backbone
    # dropout; evaluation reuses them. Bounded: once prefix_cache_mb is full, no new entries (the same
    # budget bounds UMCA's cache of frozen-LM text states).
    prefix_cache: bool = False
    prefix_cache_mb: int = Field(1024, ge=1)
    # bf16 autocast over the frozen backbone and the MM blocks (float32 master weights; heads, AV
    # encoder and losses stay float32). auto: on a CUDA GPU with bf16, or a CPU with AMX/AVX512-BF16.
    autocast: Literal["off", "bf16", "auto"] = "off"
    # GPT-2's tanh GELU as nn.GELU(approximate="tanh") (the same function, one fused kernel) in the
    # copied FFWs and the frozen backbone's MLPs.
    fused_gelu: bool = False
    # Activation checkpointing of the frozen decoder layers above the first MM block: their
    # activations are recomputed in backward instead of stored.
    checkpoint_frozen: bool = False
    # Evaluation and prediction under torch.inference_mode instead of no_grad.
    inference_mode: bool = False
    # The token-wise parts (the frozen layers' MLPs and attention projections, the MM blocks' FFWs)
    # on real positions only: gathered over the non-pad positions, scattered back (pads are never
    # attended to nor read; outputs and gradients at real positions are the default path's).
    pack_tokens: bool = False
    # Stage 2's AdamW as one fused kernel per step (torch's `fused=True`) instead of the per-parameter
    # loop: the same update to float rounding, one pass over weights, gradients and both moments
    # (the loop's optimiser step was 5 % of a mosei-base step on CPU; benchmarks/RESULTS.md).
    fused_adamw: bool = False


class Config(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    perf: PerfConfig = Field(default_factory=PerfConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ----------------------------------------------------------------------------- loading


def parse_override(item: str) -> tuple[str, Any]:
    """`"model.n_fusion=16"` -> `("model.n_fusion", 16)`; the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.n_fusion=16")
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value {raw!r} is not valid YAML ({e})") from e
    return key.strip(), value


def apply_overrides(tree: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) onto a nested dict, in place."""
    for item in overrides or []:
        key, value = parse_override(item)
        path = key.split(".")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return tree


def preset_dict(name: str) -> dict[str, Any]:
    """The raw dict of a built-in preset (see `deepmlf/presets/*.yaml`).

    A preset may derive from another by naming it (`preset: sims`): its keys override that one's.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("deepmlf.presets").joinpath(f"{name}.yaml").read_text()
    tree = load_yaml(text) or {}
    base = tree.pop("preset", None)
    return _deep_merge(preset_dict(base), tree) if base else tree


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path}: expected a mapping at top level, got {type(tree).__name__}")
    return tree


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {e['msg']}{got_s}")
    return "\n".join(lines)


def config_from_dict(tree: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def load_config(
    path: str | Path | None = None, *, preset: str | None = None, overrides: list[str] | None = None
) -> Config:
    """Preset (optional) <- YAML file (optional, may name `preset:` itself) <- `--set` overrides."""
    tree: dict[str, Any] = {}
    source = []
    file_tree = read_yaml(path) if path is not None else {}
    preset = preset or file_tree.pop("preset", None)
    if preset is not None:
        tree = preset_dict(preset)
        source.append(f"preset {preset}")
    if path is not None:
        _deep_merge(tree, file_tree)
        source.append(str(path))
    apply_overrides(tree, overrides)
    if overrides:
        source.append("--set " + " ".join(overrides))
    return config_from_dict(tree, ", ".join(source) or "defaults")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def check_against_backbone(cfg: ModelConfig, *, n_layers: int, hidden_size: int, max_positions: int | None = None,
                           max_text_len: int | None = None) -> None:
    """Checks that need the backbone's config; raises ConfigError naming the key.

    max_positions: the backbone's learned position table (GPT-2 n_positions; None = no hard cap);
    the padded text and the fusion tokens behind it must fit in it.
    """
    if cfg.backbone_layers is not None and cfg.backbone_layers > n_layers:
        raise ConfigError(f"model.backbone_layers={cfg.backbone_layers}: backbone {cfg.backbone!r} has only {n_layers} decoder layers")
    bad = [i for i in cfg.mm_layers if i >= n_layers]
    if bad:
        raise ConfigError(
            f"model.mm_layers={cfg.mm_layers}: index {bad[0]} is out of range; backbone "
            f"{cfg.backbone!r} has {n_layers} decoder layers (valid 0..{n_layers - 1})"
        )
    if hidden_size % cfg.n_heads:
        raise ConfigError(
            f"model.n_heads={cfg.n_heads} must divide the backbone width {hidden_size} ({cfg.backbone!r})"
        )
    suffix = cfg.rationale.max_len + 16 if cfg.rationale.enabled else 0  # prompt + rationale (prompt: a few tokens)
    if max_positions is not None and max_text_len is not None and max_text_len + cfg.n_fusion + suffix > max_positions:
        raise ConfigError(
            f"data.max_text_len={max_text_len} + model.n_fusion={cfg.n_fusion} tokens"
            f"{' + the rationale (model.rationale.max_len + 16)' if suffix else ''} exceed the "
            f"{max_positions} positions of backbone {cfg.backbone!r}"
        )
