"""DeepMLF (paper §4, DESIGN.md §1): parts, compositions and their factories.

Parts: `AVEncoder` (eq. 6), `EmbeddingAugment` (SeqAug & co., Table 12), `GatedCrossAttention`,
`Gate`, `MMBlock` (eq. 8-11), the copied FFW (`make_ffw`), heads (eq. 12-13).
Compositions: `MultimodalLM` (frozen decoder + fusion tokens + MM blocks), `DeepMLF` (stage 2),
`AVRegressor` (stage 1), `TextRegressor` (text-only reference).
Factories (the only readers of the config tree): `build_model`, `build_av_regressor`,
`build_text_regressor`; `load_av_encoder_checkpoint` initialises stage 2 from stage 1.
Registry (`model.arch`): `Arch`, `register_arch`, `get_arch`, `build_arch`, `known_arches`.
"""

from .augment import EmbeddingAugment, permute_real_positions, seqaug
from .av_encoder import (
    AVEncoder,
    AVEncoderOutput,
    AVRegressor,
    AVRegressorOutput,
    length_aware_pool,
    masked_mean,
    sinusoidal_positions,
)
from .build import (
    build_av_encoder,
    build_av_regressor,
    build_model,
    build_text_regressor,
    check_model_against,
    load_av_encoder_checkpoint,
)
from .deepmlf import DeepMLF, DeepMLFOutput, LossWeights, next_token_targets
from .ffw import GeluMLP, SwiGLUMLP, copy_mlp, make_ffw
from .heads import DeepMLFHeads, ScalarHead, TaskHead
from .mm_block import Gate, GatedCrossAttention, MMBlock
from .multimodal_lm import AVMemory, DecoderLayerWithMM, MultimodalLM, MultimodalLMOutput
from .registry import Arch, build_arch, get_arch, known_arches, register_arch
from .text_regressor import TextRegressor, TextRegressorOutput

__all__ = [
    "Arch",
    "AVEncoder",
    "AVEncoderOutput",
    "AVMemory",
    "AVRegressor",
    "AVRegressorOutput",
    "DecoderLayerWithMM",
    "DeepMLF",
    "DeepMLFHeads",
    "DeepMLFOutput",
    "EmbeddingAugment",
    "Gate",
    "GatedCrossAttention",
    "GeluMLP",
    "LossWeights",
    "MMBlock",
    "MultimodalLM",
    "MultimodalLMOutput",
    "ScalarHead",
    "SwiGLUMLP",
    "TaskHead",
    "TextRegressor",
    "TextRegressorOutput",
    "build_arch",
    "build_av_encoder",
    "build_av_regressor",
    "build_model",
    "build_text_regressor",
    "check_model_against",
    "copy_mlp",
    "get_arch",
    "known_arches",
    "length_aware_pool",
    "load_av_encoder_checkpoint",
    "make_ffw",
    "masked_mean",
    "next_token_targets",
    "permute_real_positions",
    "register_arch",
    "seqaug",
    "sinusoidal_positions",
]
