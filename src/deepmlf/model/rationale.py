"""The rationale head (MulCoT-RD, adapted to DeepMLF; docs/rationale.md): after the fusion tokens,
a prompt and the rationale, written by the frozen LM's own head.

Sequence: [text T ‖ fusion K ‖ prompt P ‖ rationale R], positions continuing. The MM blocks treat
the prompt and rationale tokens as text (`DecoderLayerWithMM._mm`): no cross-attention to the AV
memory, so they reach audio and video only through the fusion tokens - by the frozen attention,
and with `model.rationale.readout: fusion` also by a trainable gated cross-attention to each MM
layer's fusion-token states (`FusionReadout`; the decoding steps reuse the prefix pass's
states, `MultimodalLMOutput.mm_fusion_states`) - and, the mask being causal, the
text tokens (hence x_tK, y_t) and the fusion tokens (hence y_o, y_f) are what they are without
the suffix. Training adds the rationale's token CE (teacher forcing), optionally token-level KD
from a trained assistant (`deepmlf.losses.token_kd`) and MulCoT-RD's second, label-only task
`Prediction: <score>` (one more LM pass). Generation is batched greedy decoding that continues
the KV cache of the text + fusion + prompt pass, at most `max_len` tokens.

Optional LoRA (peft) on the query/value projections of the last decoder layers is applied to
the suffix positions only (a forward hook zeroes its update elsewhere), so the text and fusion
states stay exactly DeepMLF's.

Shapes: B batch, T text tokens, K fusion tokens, P prompt tokens, R rationale tokens, D LM width, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..data.batch import Batch
from ..errors import ConfigError
from ..losses.token_kd import token_kd_loss
from .av_encoder import labels_usable
from .deepmlf import DeepMLF, DeepMLFOutput
from .multimodal_lm import MultimodalLM
from .state import count_parameters

LABEL_PROMPT = "\nLabel:"  # the label-only task's prompt (MulCoT-RD keeps the two tasks' templates apart)
# LoRA targets by model_type (peft's habit): GPT-2's fused qkv Conv1D, Llama's query and value projections.
LORA_TARGETS = {"gpt2": r"attn\.c_attn", "llama": r"self_attn\.(q_proj|v_proj)"}


@dataclass(frozen=True)
class RationaleSettings:
    """`model.rationale`, as the model needs it (built by `build_model`)."""

    max_len: int = 48
    lambda_rat: float = 1.0
    label_task: bool = False
    lambda_label: float = 1.0
    kd_ce_weight: float = 0.7
    kd_weight: float = 0.3
    kd_temperature: float = 2.0
    kd_t2: bool = False


@dataclass
class RationaleDeepMLFOutput(DeepMLFOutput):
    rationale_logits: Tensor | None = None  # (B, R, V) next-token logits for the teacher rationale (training)
    rationale: list[str] | None = None  # generated rationales (explain / predict)


def tokenize_rationales(tokenizer: Any, texts: Sequence[str | None], max_len: int) -> tuple[Tensor, Tensor]:
    """(B, R) ids (" " + text, no specials, truncated to max_len - 1, then eos) and mask; a None text
    gives an all-zero mask row. R = the longest row (at least 1)."""
    eos = int(tokenizer.eos_token_id)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
    rows = []
    for t in texts:
        ids = [] if t is None else list(tokenizer(" " + t.strip(), add_special_tokens=False)["input_ids"])
        rows.append(None if t is None else ids[: max_len - 1] + [eos])
    R = max([len(r) for r in rows if r is not None] or [1])
    ids = torch.full((len(rows), R), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), R), dtype=torch.long)
    for i, r in enumerate(rows):
        if r is not None:
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
    return ids, mask


class RationaleCollate:
    """Wraps a batch collate: attaches the teacher rationales of the batch's ids (model.rationale.path)."""

    def __init__(self, base: Any, tokenizer: Any, rationales: Mapping[str, str], max_len: int) -> None:
        self.base, self.tokenizer, self.rationales, self.max_len = base, tokenizer, dict(rationales), max_len

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        batch = self.base(samples)
        batch.rationale_ids, batch.rationale_mask = tokenize_rationales(
            self.tokenizer, [self.rationales.get(str(i)) for i in batch.ids], self.max_len)
        return batch


def add_suffix_lora(lm: MultimodalLM, *, n_layers: int, r: int, alpha: float, dropout: float) -> list[nn.Parameter]:
    """peft LoRA on the last `n_layers` decoder layers, active on suffix positions only; returns its parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    bb = lm.backbone
    total = len(bb.layers)
    first = lm.mm_layers[0]
    if n_layers > total - first - 1:
        raise ConfigError(
            f"model.rationale.lora_layers={n_layers}: LoRA goes on layers after the first MM block "
            f"(layer {first}); this backbone has {total - first - 1} of them")
    target = LORA_TARGETS.get(bb.model_type)
    if target is None:
        raise ConfigError(f"model.rationale.lora_layers: no LoRA targets for model_type {bb.model_type!r}")
    layers = "|".join(str(i) for i in range(total - n_layers, total))
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, fan_in_fan_out=bb.model_type == "gpt2",
                     target_modules=rf".*\.({layers})\.(layer\.)?{target}$")
    # peft marks everything but its adapters as frozen: keep what trained before as it was.
    before = {id(p): p.requires_grad for p in lm.backbone_model.parameters()}
    inject_adapter_in_model(cfg, lm.backbone_model)
    for p in lm.backbone_model.parameters():
        if id(p) in before:
            p.requires_grad_(before[id(p)])
    memory = lm.memory
    params: list[nn.Parameter] = []

    def suffix_only(module: nn.Module, args: Any, out: Tensor) -> Tensor:
        # out: (B, S, out) LoRA update; the last `n_suffix` positions are the suffix (0 outside one).
        S, n = out.shape[1], memory.n_suffix
        if n >= S:
            return out
        keep = torch.zeros(S, 1, dtype=out.dtype, device=out.device)
        keep[S - n:] = 1
        return out * keep

    for name, module in lm.backbone_model.named_modules():
        if name.endswith("lora_B.default"):
            module.register_forward_hook(suffix_only)
    for name, p in lm.backbone_model.named_parameters():
        if "lora_" in name:
            params.append(p)
    if not params:
        raise ConfigError(f"model.rationale.lora_layers={n_layers}: no LoRA module was injected")
    return params


class RationaleDeepMLF(DeepMLF):
    """DeepMLF plus the rationale suffix (module docstring). Built by `build_model` when
    `model.rationale.enabled`; `teacher` (a trained assistant) turns on token-level KD."""

    def __init__(self, *, rationale: RationaleSettings, prompt_ids: Tensor, tokenizer: Any,
                 lora_params: Sequence[nn.Parameter] = (), teacher: "RationaleDeepMLF | None" = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rationale_settings = rationale
        self.register_buffer("prompt_ids", prompt_ids.long(), persistent=False)  # (P,)
        self.register_buffer("label_prompt_ids", torch.tensor(
            tokenizer(LABEL_PROMPT, add_special_tokens=False)["input_ids"], dtype=torch.long), persistent=False)
        self.tokenizer = tokenizer
        self._lora = tuple(lora_params)  # plain tuple: already registered inside the backbone's modules
        self._teacher = (teacher,) if teacher is not None else ()  # not a submodule: no state dict, no optimiser
        if teacher is not None:
            teacher.eval().requires_grad_(False)

    # ------------------------------------------------------------------ forward
    def _suffix_tokens(self, prompt: Tensor, ids: Tensor | None, mask: Tensor | None, B: int) -> tuple[Tensor, Tensor]:
        """Token ids (B, P+R-1) of [prompt ‖ ids[:, :-1]] and their mask (the last rationale token
        is only a target)."""
        p = prompt[None, :].expand(B, -1)
        tokens = p if ids is None else torch.cat([p, ids[:, :-1]], dim=1)
        m = torch.ones_like(p) if mask is None else torch.cat([torch.ones_like(p), mask[:, :-1]], dim=1)
        return tokens, m

    def _suffix(self, prompt: Tensor, ids: Tensor | None, mask: Tensor | None, B: int) -> tuple[Tensor, Tensor]:
        """Embeddings (B, P+R-1, D) of [prompt ‖ ids[:, :-1]] and their mask."""
        tokens, m = self._suffix_tokens(prompt, ids, mask, B)
        return self.lm.backbone.embed_tokens(tokens), m

    def _suffix_logits(self, batch: Batch, z: Tensor, z_mask: Tensor, prompt: Tensor, ids: Tensor,
                       mask: Tensor) -> tuple[Any, Tensor]:
        tokens, m = self._suffix_tokens(prompt, ids, mask, ids.shape[0])
        emb = self.lm.backbone.embed_tokens(tokens)
        # suffix_ids: the key of the suffix-state cache (model.rationale.prefix_cache), when on.
        lm_out = self.lm(batch.input_ids, batch.attention_mask, z, z_mask, suffix_embeds=emb, suffix_mask=m,
                         suffix_ids=tokens)
        P = prompt.shape[0]
        logits = self.lm.lm_logits(lm_out.suffix_hidden[:, P - 1:].contiguous())  # (B, R, V)
        return lm_out, logits

    def forward(self, batch: Batch) -> RationaleDeepMLFOutput:
        enc = self.av_encoder.encode_batch(batch)  # z: (B, S, D_av), mask: (B, S)
        z = self.av_norm(enc.z)
        logits = None
        if batch.rationale_ids is not None:
            lm_out, logits = self._suffix_logits(batch, z, enc.mask, self.prompt_ids, batch.rationale_ids,
                                                 batch.rationale_mask)
        else:
            lm_out = self.lm(batch.input_ids, batch.attention_mask, z, enc.mask)
        base = self.head_outputs(batch, lm_out, z, enc.mask)
        out = RationaleDeepMLFOutput(**{f.name: getattr(base, f.name) for f in fields(base)}, rationale_logits=logits)
        if labels_usable(batch.labels):
            out.loss, out.loss_terms = self.losses(out, batch, use_lm=out.lm_logits is not None)
            self._add_rationale_losses(out, batch, z, enc.mask)
        return out

    def _add_rationale_losses(self, out: RationaleDeepMLFOutput, batch: Batch, z: Tensor, z_mask: Tensor) -> None:
        s = self.rationale_settings
        if out.rationale_logits is not None and bool(batch.rationale_mask.any()):
            targets = batch.rationale_ids.masked_fill(batch.rationale_mask == 0, -100)  # (B, R)
            teacher_logits = None
            if self._teacher:
                teacher = self._teacher[0]
                if next(teacher.parameters()).device != targets.device:
                    teacher.to(targets.device)
                with torch.no_grad():
                    teacher_logits = teacher(batch).rationale_logits
            kd = token_kd_loss(out.rationale_logits, targets, teacher_logits,
                               ce_weight=s.kd_ce_weight if self._teacher else 1.0,
                               kd_weight=s.kd_weight if self._teacher else 0.0,
                               temperature=s.kd_temperature, t2_scale=s.kd_t2)
            out.loss_terms["rationale"] = kd.ce
            if self._teacher:
                out.loss_terms["rationale_kd"] = kd.kl
            out.loss = out.loss + s.lambda_rat * kd.loss
        if s.label_task:
            # MulCoT-RD's second task: "Prediction: <score>" after its own prompt, one more pass.
            texts = [f"Prediction: {float(y):.1f}" for y in batch.labels]
            ids, mask = tokenize_rationales(self.tokenizer, texts, s.max_len)
            ids, mask = ids.to(z.device), mask.to(z.device)
            _, logits = self._suffix_logits(batch, z, z_mask, self.label_prompt_ids, ids, mask)
            ce = token_kd_loss(logits, ids.masked_fill(mask == 0, -100)).ce
            out.loss_terms["label"] = ce
            out.loss = out.loss + s.lambda_label * ce

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def explain(self, batch: Batch, *, max_len: int | None = None) -> tuple[RationaleDeepMLFOutput, Tensor]:
        """Heads and greedy rationales in one pass: text + fusion + prompt fill a KV cache, then at
        most `max_len` (model.rationale.max_len) tokens are decoded for the whole batch at once.
        Returns (output with `.rationale` strings, token ids (B, <= max_len), eos-terminated rows
        padded with eos)."""
        max_len = self.rationale_settings.max_len if max_len is None else max_len
        was_training = self.training
        self.eval()
        try:
            enc = self.av_encoder.encode_batch(batch)
            z = self.av_norm(enc.z)
            B, T = batch.input_ids.shape
            emb, m = self._suffix(self.prompt_ids, None, None, B)
            cache = self.lm.new_cache()
            lm_out = self.lm(batch.input_ids, batch.attention_mask, z, enc.mask, suffix_embeds=emb, suffix_mask=m,
                             cache=cache)
            base = self.head_outputs(batch, lm_out, z, enc.mask)
            out = RationaleDeepMLFOutput(**{f.name: getattr(base, f.name) for f in fields(base)})
            eos = int(self.tokenizer.eos_token_id)
            attn = torch.cat([batch.attention_mask.long(), m.new_ones(B, self.lm.n_fusion), m.long()], dim=1)
            pos = attn.shape[1]
            logits = self.lm.lm_logits(lm_out.suffix_hidden[:, -1:])[:, -1]  # (B, V)
            done = torch.zeros(B, dtype=torch.bool, device=z.device)
            tokens: list[Tensor] = []
            for step in range(max_len):
                nxt = logits.argmax(-1).masked_fill(done, eos)  # (B,)
                tokens.append(nxt)
                done |= nxt == eos
                if bool(done.all()) or step == max_len - 1:
                    break
                attn = torch.cat([attn, attn.new_ones(B, 1)], dim=1)
                position = torch.full((B, 1), pos + step, dtype=torch.long, device=z.device)
                h = self.lm.decode_step(self.lm.backbone.embed_tokens(nxt[:, None]), attn, position, z, enc.mask, cache,
                                        fusion_states=lm_out.mm_fusion_states)
                logits = self.lm.lm_logits(h)[:, -1]
            ids = torch.stack(tokens, dim=1)  # (B, <= max_len)
            out.rationale = [self._decode(row) for row in ids.tolist()]
            return out, ids
        finally:
            self.train(was_training)

    def _decode(self, row: list[int]) -> str:
        eos = int(self.tokenizer.eos_token_id)
        row = row[: row.index(eos)] if eos in row else row
        return self.tokenizer.decode(row, skip_special_tokens=True).strip()

    def generate_rationale(self, batch: Batch, output: Any = None) -> list[str]:
        """The Predictor's rationale hook (deepmlf.predictor)."""
        return self.explain(batch)[0].rationale or []

    def lr_parts(self) -> dict[str, list[nn.Parameter]]:
        """DeepMLF's parts plus `rationale_lora` (train.lr_parts)."""
        return {**super().lr_parts(), "rationale_lora": list(self._lora)}

    def parameter_counts(self) -> dict:
        counts = super().parameter_counts()
        if self._lora:
            lora = count_parameters({"rationale_lora": list(self._lora)})
            counts["by_module"]["rationale_lora"] = lora["by_module"]["rationale_lora"]
            counts["trainable"] += lora["trainable"]
            counts["total"] += lora["total"]
        return counts
