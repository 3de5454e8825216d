"""Why does (or doesn't) DeepMLF's deep path learn? Measurements on one batch (issue 8 item 1).

`deep_fusion_report(model, batch)` runs one training-mode forward + backward and one eval-mode
forward of a built DeepMLF and returns plain numbers (JSON-ready):

  * `grad_norm`: L2 norm of the gradient reaching each part (fusion tokens; per MM block the
    cross-attention, its gate, the FFW, its gate, the norms; heads; AV encoder), and the parameter
    RMS next to it, so grad/param says how far one step can move each part;
  * `rms`: the LM's token-embedding RMS against the fusion tokens' RMS (eq. 7: both enter the same
    residual stream), and per MM layer the residual stream's RMS on text and fusion tokens next
    to the RMS of the gated cross-attention and FFW branches that are added to it (eq. 9-11);
  * `fusion_attention`: per decoder layer, where the fusion tokens' self-attention mass goes
    (the first token, the other text tokens, the fusion tokens), from an eager-attention pass;
  * `gca_entropy`: per MM block, the entropy of the cross-attention over the real AV steps
    divided by its maximum log(S) (1 = uniform: the fusion tokens read Z without choosing);
  * `gates`: the gate values (Table 13) and what Adam's step bound lr · steps allows them to move.

Nothing here changes the model: hooks are removed and the eager-attention switch is restored on exit.
`benchmarks/deep_fusion.py` runs it on the demo recipe; docs/deep-fusion.md records the findings.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

from .data.batch import Batch


def _rms(x: Tensor) -> float:
    return float(x.detach().float().pow(2).mean().sqrt())


def _grad_norm(params: list[nn.Parameter]) -> float:
    g = [p.grad.detach().float().pow(2).sum() for p in params if p.grad is not None]
    return float(torch.stack(g).sum().sqrt()) if g else 0.0


def _param_rms(params: list[nn.Parameter]) -> float:
    n = sum(p.numel() for p in params)
    return float(math.sqrt(sum(float(p.detach().float().pow(2).sum()) for p in params) / max(n, 1)))


def parameter_parts(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters of a DeepMLF by part: `fusion_tokens`, `L{i}.gca` / `.gate_attn` /
    `.ffw` / `.gate_ffw` / `.norms` per MM layer i, `heads.task|text|av|fusion`, `av_encoder`, `av_norm`."""
    parts: dict[str, list[nn.Parameter]] = {"fusion_tokens": [model.lm.fusion_tokens]}
    for i, block in model.lm.mm_blocks():
        parts[f"L{i}.gca"] = list(block.attn.parameters())
        parts[f"L{i}.gate_attn"] = list(block.gate_attn.parameters())
        parts[f"L{i}.norms"] = list(block.norm_attn.parameters()) + (
            list(block.norm_ffw.parameters()) if block.norm_ffw is not None else [])
        if block.ffw is not None:
            parts[f"L{i}.ffw"] = [p for p in block.ffw.parameters() if p.requires_grad]
            parts[f"L{i}.gate_ffw"] = list(block.gate_ffw.parameters())
    for name in ("task", "text", "av", "fusion"):
        parts[f"heads.{name}"] = list(getattr(model.heads, name).parameters())
    parts["av_encoder"] = [p for p in model.av_encoder.parameters() if p.requires_grad]
    parts["av_norm"] = list(model.av_norm.parameters())
    return {k: [p for p in v if p.requires_grad] for k, v in parts.items() if any(p.requires_grad for p in v)}


@contextmanager
def _branch_probes(model: nn.Module, store: dict[str, dict[str, float]]) -> Iterator[None]:
    """Record, per MM layer, RMS of the block input (text / fusion part) and of each gated branch."""
    handles = []
    for i, block in model.lm.mm_blocks():
        rec = store.setdefault(f"L{i}", {})

        def pre(_m, args, kwargs, rec=rec):
            h = args[0]
            n_text = kwargs["n_text"]
            # Text without its first token: the first position is the LM's attention sink, whose
            # few huge channels (RMS ~400 in SmolLM2-135M) would hide the other tokens' scale.
            rec["stream_text_first"] = _rms(h[:, :1]) if n_text else float("nan")
            rec["stream_text"] = _rms(h[:, 1:n_text]) if n_text > 1 else float("nan")
            rec["stream_fusion"] = _rms(h[:, n_text:])

        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        # The branch as added to the stream: gate output times model.gca_scale.
        handles.append(block.gate_attn.register_forward_hook(
            lambda _m, _i, out, rec=rec, block=block: rec.__setitem__("gca_branch", _rms(out) * block.gca_scale)))
        if block.gate_ffw is not None:
            handles.append(block.gate_ffw.register_forward_hook(
                lambda _m, _i, out, rec=rec: rec.__setitem__("ffw_branch", _rms(out))))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def _gca_entropy_probe(model: nn.Module, store: dict[str, float]) -> Iterator[None]:
    """Entropy / log(S) of each block's cross-attention over the real AV steps (recomputed from q, k)."""
    handles = []
    for i, block in model.lm.mm_blocks():
        attn = block.attn

        def hook(m, args, _out, i=i):
            x, z, z_mask = args
            B, Q, D = x.shape
            hd = D // m.n_heads
            q = m.q_proj(x).view(B, Q, m.n_heads, hd).transpose(1, 2)
            k = m.k_proj(z).view(B, z.shape[1], m.n_heads, hd).transpose(1, 2)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            s = s.masked_fill(~z_mask[:, None, None, :], float("-inf"))
            p = s.softmax(-1)
            ent = -(p * p.clamp_min(1e-12).log()).sum(-1)  # (B, h, Q)
            n_real = z_mask.sum(-1).clamp_min(2).float().log()  # (B,)
            store[f"L{i}"] = float((ent / n_real[:, None, None]).mean())

        handles.append(attn.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def fusion_attention(model: nn.Module, batch: Batch) -> dict[str, dict[str, float]]:
    """Per decoder layer: mean share of the fusion tokens' attention on the first token, on the
    other real text tokens, and on the fusion tokens (eager attention, eval mode, one pass)."""
    lm = model.lm
    config = lm.backbone_model.config
    old = getattr(config, "_attn_implementation", None)
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        config._attn_implementation = "eager"
        with torch.no_grad():
            enc = model.av_encoder.encode_batch(batch)
            z = model.av_norm(enc.z)
            B, T = batch.input_ids.shape
            x_t = lm.backbone.embed_tokens(batch.input_ids)
            x_f = lm.fusion_tokens.to(x_t.dtype).expand(B, -1, -1)
            mask = torch.cat([batch.attention_mask.long(), batch.attention_mask.new_ones(B, lm.n_fusion).long()], 1)
            pos = torch.arange(T + lm.n_fusion)[None, :].expand(B, -1)
            with lm.memory.hold(z.float(), enc.mask, n_text=T):
                res = lm.backbone_model.base_model(inputs_embeds=torch.cat([x_t, x_f], 1), attention_mask=mask,
                                                   position_ids=pos, output_attentions=True, use_cache=False)
        text_mask = batch.attention_mask.bool()  # (B, T)
        first = torch.zeros_like(text_mask)
        first[:, 0] = True
        for li, att in enumerate(res.attentions or ()):
            if att is None:
                continue
            a = att[:, :, T:, :].float().mean(dim=(1, 2))  # (B, T+K): mean over heads and fusion queries
            out[str(li)] = {
                "first_token": float(a[:, :T][first].mean()),
                "other_text": float((a[:, :T] * (text_mask & ~first)).sum(-1).mean()),
                "fusion": float(a[:, T:].sum(-1).mean()),
            }
    finally:
        if old is not None:
            config._attn_implementation = old
        model.train(was_training)
    return out


def deep_fusion_report(model: nn.Module, batch: Batch, *, gate_lr: float | None = None,
                       steps: int | None = None) -> dict:
    """One batch's diagnostics of a DeepMLF (see the module docstring). Gradients are zeroed after.

    `gate_lr` (the gates' learning rate) and `steps` (optimiser steps of the recipe) add the gates'
    Adam bound: an Adam step moves a parameter by about lr at most, so |Δa| ≤ lr · steps and
    |Δsigmoid(a)| ≤ lr · steps / 4.
    """
    parts = parameter_parts(model)
    model.zero_grad(set_to_none=True)
    # The training-mode pass updates BatchNorm statistics: keep a copy and put it back after.
    buffers = {n: b.detach().clone() for n, b in model.named_buffers() if b is not None}
    was_training = model.training
    model.train(True)
    branches: dict[str, dict[str, float]] = {}
    entropy: dict[str, float] = {}
    with _branch_probes(model, branches), _gca_entropy_probe(model, entropy):
        out = model(batch)
    out.loss.backward()
    grads = {k: {"grad_norm": _grad_norm(v), "param_rms": _param_rms(v),
                 "n": int(sum(p.numel() for p in v))} for k, v in parts.items()}
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for n, b in model.named_buffers():
            if n in buffers:
                b.copy_(buffers[n])
    emb = model.lm.backbone.embed_tokens.weight
    real = batch.input_ids[batch.attention_mask.bool()]
    report = {
        "loss_terms": {k: float(v) for k, v in out.loss_terms.items()},
        "grad": grads,
        "rms": {
            "embedding_table": _rms(emb),
            "embedding_real_tokens": _rms(emb[real]),
            "fusion_tokens": _rms(model.lm.fusion_tokens),
            "mm_layers": branches,
        },
        "gca_entropy": entropy,
        "fusion_attention": fusion_attention(model, batch),
        "gates": model.gate_values(),
    }
    if gate_lr is not None and steps is not None:
        report["gate_adam_bound"] = {"lr": gate_lr, "steps": steps, "max_delta_a": gate_lr * steps,
                                     "max_delta_sigmoid": gate_lr * steps / 4}
    model.train(was_training)
    return report


__all__ = ["deep_fusion_report", "fusion_attention", "parameter_parts"]
