"""Factories: the only readers of the config tree for the model (STYLE.md habit 1).

    build_model(cfg, audio_dim=, vision_dim=, backbone=None) -> DeepMLF          (stage 2, arch "deepmlf")
    build_av_regressor(cfg, audio_dim, vision_dim) -> AVRegressor                (stage 1)
    build_text_regressor(cfg, backbone=None) -> TextRegressor                     (text-only reference)

Freezing is decided here, once, by module: the backbone is frozen before anything is built on
it; the new modules train; `pretrain_freeze` freezes the AV encoder; a LoRA FFW freezes its
copied base. The trainable count is logged and the backbone's grad-freedom asserted.

The arch "deepmlf" (`model.arch`, the default) is registered at the end (deepmlf.model.registry).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..backbones.adapter import Backbone, BackboneSpec
from ..config import AVEncoderConfig, Config, check_against_backbone
from ..errors import CheckpointError, ConfigError
from .augment import EmbeddingAugment
from .av_encoder import AVEncoder, AVRegressor
from .deepmlf import DeepMLF, LossWeights
from .ffw import make_ffw
from .heads import DeepMLFHeads
from .mm_block import FusionReadout, Gate, GatedCrossAttention, MMBlock
from .multimodal_lm import MultimodalLM, TextStateCache, ensure_unwrapped, shared_caches
from .perf import apply_perf, fuse_tanh_gelu
from .registry import Arch, register_arch
from .state import load_strict
from .text_regressor import TextRegressor

log = logging.getLogger(__name__)


def _load_backbone(cfg: Config) -> Backbone:
    from ..backbones import load_backbone  # lazy: loading pulls in gguf / safetensors machinery

    return load_backbone(cfg.model.backbone, dtype=cfg.model.dtype)


def keep_first_layers(backbone: Backbone, n: int) -> None:
    """`model.backbone_layers`: drop the decoder layers from index n on (a smaller student that
    shares the tokenizer; the final norm and LM head then read layer n-1). In place, before wrapping."""
    layers = backbone.layers
    if n > len(layers):
        raise ConfigError(f"model.backbone_layers={n}: backbone {backbone.name!r} has only {len(layers)} decoder layers")
    if n == len(layers):
        return
    del layers[n:]
    config = backbone.model.config
    config.num_hidden_layers = n  # GPT-2 maps it to n_layer; HF caches and masks size themselves by it
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[:n]


def build_av_encoder(cfg: AVEncoderConfig, *, audio_dim: int, vision_dim: int) -> AVEncoder:
    for key, dim in (("audio", audio_dim), ("vision", vision_dim)):
        if dim < 1:
            raise ConfigError(f"{key} feature dimension must be >= 1, got {dim}")
    return AVEncoder(audio_dim, vision_dim, cfg)


def build_av_regressor(cfg: Config, audio_dim: int, vision_dim: int) -> AVRegressor:
    """Stage 1: the AV encoder of `cfg.model.av_encoder` plus a scalar head."""
    model = AVRegressor(encoder=build_av_encoder(cfg.model.av_encoder, audio_dim=audio_dim, vision_dim=vision_dim),
                        readout=cfg.pretrain.readout)
    log.info("AV regressor: %s trainable parameters", f"{model.parameter_counts()['trainable']:,}")
    return model


def load_av_encoder_checkpoint(encoder: AVEncoder, path: str | Path) -> None:
    """Initialise `encoder` from a stage-1 checkpoint `{"av_encoder": state_dict, "config": ..., ...}`.

    Raises CheckpointError naming the file and the missing / unexpected / mis-shaped key.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model.av_encoder.checkpoint: {path} does not exist (run stage 1 or fix the path)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: say which, not a pickle traceback
        raise CheckpointError(f"model.av_encoder.checkpoint: cannot read {path} as a torch checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("av_encoder"), dict):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a stage-1 checkpoint (expected an 'av_encoder' state dict; found {keys})")
    try:
        load_strict(encoder, ckpt["av_encoder"], expected=encoder.state_dict(), what=f"AV encoder ({path})")
    except CheckpointError as e:
        raise CheckpointError(f"{e} — check model.av_encoder settings and feature dims against stage 1") from None


def check_model_against(cfg: Config, spec: BackboneSpec) -> None:
    """Every check of `cfg` that needs the backbone, on its spec (config + tokenizer, no weights).

    Run before stage 1 (`deepmlf.train.preflight`) and again by `build_model` on the loaded backbone.
    """
    check_against_backbone(cfg.model, n_layers=spec.n_layers, hidden_size=spec.hidden_size,
                           max_positions=spec.max_positions, max_text_len=cfg.data.max_text_len)


def _build_mm_block(cfg: Config, backbone: Backbone, layer_index: int) -> MMBlock:
    m = cfg.model
    ffw = make_ffw(
        backbone, layer_index, mode=m.ffw, lora_r=m.lora.r, lora_alpha=m.lora.alpha, lora_dropout=m.lora.dropout
    )
    has_ffw = ffw is not None
    return MMBlock(
        attn=GatedCrossAttention(
            d_model=backbone.hidden_size, d_av=m.av_encoder.d_av, n_heads=m.n_heads, dropout=m.dropout
        ),
        norm_attn=backbone.make_norm(),
        gate_attn=Gate(kind=m.gate, init=m.gate_init),
        ffw=ffw,
        norm_ffw=backbone.make_norm() if has_ffw else None,
        gate_ffw=Gate(kind=m.gate, init=m.gate_init) if has_ffw else None,
        query=m.gca_query,
        gca_scale=m.gca_scale,
        ffw_tokens=m.ffw_tokens,
        readout=_build_readout(cfg, backbone),
    )


def _build_readout(cfg: Config, backbone: Backbone) -> FusionReadout | None:
    """model.rationale.readout: fusion: the suffix's gated cross-attention to the fusion states (LM width)."""
    m, r = cfg.model, cfg.model.rationale
    if not (r.enabled and r.readout == "fusion"):
        return None  # built after the block's own parts: with the read-out off nothing else draws
    D = backbone.hidden_size
    return FusionReadout(
        attn=GatedCrossAttention(d_model=D, d_av=D, n_heads=m.n_heads, dropout=m.dropout),
        norm_q=backbone.make_norm(), norm_kv=backbone.make_norm(),
        gate=Gate(kind=m.gate, init=m.gate_init if r.readout_gate_init is None else r.readout_gate_init),
        scale=m.gca_scale if r.readout_scale is None else r.readout_scale,
    )


def check_text_cache(m) -> None:
    """model.text_cache is exact only when the text tokens never meet a trainable part."""
    if not m.text_cache:
        return
    why = []
    if m.gca_query != "fusion":
        why.append(f"model.gca_query={m.gca_query} (text queries the AV memory)")
    if m.ffw != "off" and m.ffw_tokens != "fusion":
        why.append(f"model.ffw_tokens={m.ffw_tokens} (the FFW updates text tokens)")
    if m.augment.kind != "none" and m.augment.p_apply > 0:
        why.append(f"model.augment.kind={m.augment.kind} (text embeddings change per batch)")
    if m.backbone_dropout:
        why.append("model.backbone_dropout=true (text states change per batch)")
    if why:
        raise ConfigError("model.text_cache=true needs text states that are the frozen LM's alone; not with "
                          + "; ".join(why))


def check_prefix_cache(m) -> None:
    """model.rationale.prefix_cache is exact only when nothing trainable acts below the first MM block."""
    if not (m.rationale.enabled and m.rationale.prefix_cache):
        return
    why = []
    if not m.text_cache:
        why.append("model.text_cache=true (the transcript's states must be the frozen LM's)")
    if m.fusion_trainable:
        why.append("model.fusion_trainable=false (the fusion tokens' embeddings must not train)")
    if why:
        raise ConfigError("model.rationale.prefix_cache=true needs " + " and ".join(why))


def build_model(cfg: Config, *, audio_dim: int, vision_dim: int, backbone: Backbone | None = None) -> DeepMLF:
    """DeepMLF on `backbone` (loaded from `cfg.model.backbone` when None; it is wrapped in place)."""
    m = cfg.model
    check_text_cache(m)
    backbone = backbone if backbone is not None else _load_backbone(cfg)
    ensure_unwrapped(backbone)
    if m.backbone_layers is not None:
        keep_first_layers(backbone, m.backbone_layers)
    check_model_against(cfg, backbone.spec())
    backbone.freeze()  # once, before anything trainable is attached to it
    check_prefix_cache(m)
    # The fingerprint reads the frozen weights only: taken before any MM block or LoRA is attached.
    budget = m.text_cache_mb * 2**20
    caches = shared_caches(backbone, budget) if m.rationale.enabled and m.rationale.prefix_cache else None

    av_encoder = build_av_encoder(m.av_encoder, audio_dim=audio_dim, vision_dim=vision_dim)
    if m.av_encoder.init in ("pretrain_tune", "pretrain_freeze"):
        if m.av_encoder.checkpoint:
            load_av_encoder_checkpoint(av_encoder, m.av_encoder.checkpoint)
            log.info("AV encoder initialised from %s (%s)", m.av_encoder.checkpoint, m.av_encoder.init)
        else:
            log.info("AV encoder starts random: no stage-1 checkpoint yet (%s)", m.av_encoder.init)
    # random_tune ignores any checkpoint (Table 8).

    augment = EmbeddingAugment(
        kind=m.augment.kind, p_apply=m.augment.p_apply, p_perm=m.augment.p_perm,
        dropout=m.augment.dropout, noise_std=m.augment.noise_std, permutation=m.augment.permutation,
    )
    if cfg.perf.fused_gelu:
        fuse_tanh_gelu(backbone)  # before the FFW copies, which inherit the module
    mm_blocks = {i: _build_mm_block(cfg, backbone, i) for i in m.mm_layers}
    init_std = m.fusion_init_std
    if init_std == "embedding":
        init_std = float(backbone.embed_tokens.weight.detach().float().pow(2).mean().sqrt())
    lm = MultimodalLM(backbone=backbone, mm_blocks=mm_blocks, n_fusion=m.n_fusion, augment=augment,
                      backbone_dropout=m.backbone_dropout, fusion_init_std=float(init_std))
    if not m.fusion_trainable:
        lm.fusion_tokens.requires_grad_(False)  # eq. 7's embeddings stay at their init
    if m.text_cache:
        lm.text_cache = TextStateCache(budget)
    if caches is not None:
        lm.text_cache, lm.suffix_cache = caches
    # Backbone(...) gave the tokenizer an eos (pad as eos for BERT-style ones, as the authors do).
    eos = backbone.tokenizer.eos_token_id
    if m.rationale.enabled and m.double_flow.enabled:
        raise ConfigError("model.double_flow.enabled and model.rationale.enabled: the double flow does not "
                          "support the rationale suffix yet; enable one of them")
    cls, extra = (DeepMLF, {}) if not m.rationale.enabled else _rationale_parts(cfg, lm, backbone)
    model = cls(
        **extra,
        lm=lm,
        av_encoder=av_encoder,
        av_norm=nn.LayerNorm(m.av_encoder.d_av),
        heads=DeepMLFHeads(d_model=backbone.hidden_size, d_av=m.av_encoder.d_av, hidden=m.head_hidden),
        loss_weights=LossWeights(
            lambda_f=cfg.loss.lambda_f, lambda_av=cfg.loss.lambda_av,
            lambda_t=cfg.loss.lambda_t, lambda_lm=cfg.loss.lambda_lm,
        ),
        eos_token_id=int(eos),
        freeze_av_encoder=m.av_encoder.init == "pretrain_freeze",
        double_flow=_build_double_flow(cfg, backbone) if m.double_flow.enabled else None,
    )
    apply_perf(model, cfg.perf)
    leaked = [p for p in lm.backbone_parameters() if p.requires_grad]
    assert not leaked, f"{len(leaked)} backbone parameters require grad after build"
    counts = model.parameter_counts()
    log.info(
        "DeepMLF on %s: %s trainable / %s total parameters (%s)",
        backbone.name,
        f"{counts['trainable']:,}",
        f"{counts['total']:,}",
        ", ".join(f"{k} {v['trainable']:,}" for k, v in counts["by_module"].items()),
    )
    return model


def _rationale_parts(cfg: Config, lm: MultimodalLM, backbone: Backbone) -> tuple[type, dict]:
    """model.rationale: the RationaleDeepMLF class and its extra arguments (LoRA injected here, once)."""
    from .rationale import RationaleDeepMLF, RationaleSettings

    r = cfg.model.rationale
    tok = backbone.tokenizer
    prompt = tok(r.prompt, add_special_tokens=False)["input_ids"]
    if not prompt:
        raise ConfigError(f"model.rationale.prompt={r.prompt!r} has no tokens; the rationale needs a prompt")
    lm.memory.suffix_ffw = r.suffix_ffw
    lora: list = []
    if r.lora_layers:
        from .rationale import add_suffix_lora

        lora = add_suffix_lora(lm, n_layers=r.lora_layers, r=r.lora_r, alpha=r.lora_alpha, dropout=r.lora_dropout)
    teacher = None
    if r.teacher_checkpoint:
        teacher = _load_teacher(r.teacher_checkpoint, cfg, tok)
    settings = RationaleSettings(max_len=r.max_len, lambda_rat=r.lambda_rat, label_task=r.label_task,
                                 lambda_label=r.lambda_label, kd_ce_weight=r.kd_ce_weight, kd_weight=r.kd_weight,
                                 kd_temperature=r.kd_temperature, kd_t2=r.kd_t2)
    return RationaleDeepMLF, {"rationale": settings, "prompt_ids": torch.tensor(prompt), "tokenizer": tok,
                              "lora_params": lora, "teacher": teacher}


def _load_teacher(path: str, cfg: Config, tokenizer: object) -> nn.Module:
    """A trained assistant (best.pt of a rationale run) for token-level KD; same tokenizer and prompt."""
    from ..losses.token_kd import check_same_tokenizer
    from ..predictor import load
    from .rationale import RationaleDeepMLF

    teacher = load(path)
    if not isinstance(teacher.model, RationaleDeepMLF):
        raise ConfigError(f"model.rationale.teacher_checkpoint={path}: not a model with a rationale head")
    check_same_tokenizer(tokenizer, teacher.tokenizer, student_name="student", teacher_name=f"assistant ({path})")
    if teacher.config.model.rationale.prompt != cfg.model.rationale.prompt:
        raise ConfigError(f"model.rationale.prompt differs from the assistant's ({path}): "
                          f"{cfg.model.rationale.prompt!r} vs {teacher.config.model.rationale.prompt!r}")
    return teacher.model


def _build_double_flow(cfg: Config, backbone: Backbone) -> nn.Module:
    """The missing flow's parts (model.double_flow); built after everything else, so the rest of the
    model draws the same initial weights as without it."""
    from .double_flow import MIA, DoubleFlow, DoubleFlowWeights, ImaginedTokens

    m, df = cfg.model, cfg.model.double_flow
    d_av, D = m.av_encoder.d_av, backbone.hidden_size
    embed_rms = float(backbone.embed_tokens.weight.detach().float().pow(2).mean().sqrt())
    rnc = (nn.Sequential(nn.Linear(m.head_hidden, df.rnc_dim), nn.ReLU(), nn.Linear(df.rnc_dim, df.rnc_dim))
           if df.lambda_rnc > 0 else None)
    return DoubleFlow(
        imagine=ImaginedTokens(d_av=d_av, d_model=D, n_tokens=df.imagined_tokens, n_heads=m.av_encoder.n_heads,
                               embed_rms=embed_rms),
        mia=MIA(d_model=D, d_av=d_av, hidden=df.mia_hidden, dropout=df.mia_dropout) if df.mia else None,
        rnc_proj=rnc,
        weights=DoubleFlowWeights.from_config(df),
    )


def build_text_regressor(cfg: Config, backbone: Backbone | None = None) -> TextRegressor:
    """The text-only reference on the same backbone: frozen LM + W_t on x_tK."""
    backbone = backbone if backbone is not None else _load_backbone(cfg)
    model = TextRegressor(backbone=backbone)
    n_trainable = model.parameter_counts()["trainable"]
    log.info("text regressor on %s: %s trainable parameters", backbone.name, f"{n_trainable:,}")
    return model


def _build_deepmlf_arch(cfg: Config, *, dims: Mapping[str, int], backbone: Backbone | None) -> DeepMLF:
    return build_model(cfg, audio_dim=dims["audio"], vision_dim=dims["vision"], backbone=backbone)


register_arch(Arch(
    name="deepmlf", task="msa", build=_build_deepmlf_arch, inputs=("text", "audio", "vision"),
    needs_backbone=True, av_pretraining=True, check_backbone=check_model_against, display_name="DeepMLF",
    description="frozen LM + MM blocks + fusion tokens + AV encoder (paper §4)",
))
