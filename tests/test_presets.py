"""Every paper preset builds and trains one step on a random backbone of its real shape and tokenizer
kind, end to end through `train_run` (preflight, stage 1, stage 2, test), on a pickle of its dataset's
real feature shapes.

Real: the backbone family, layer count, width, attention heads (and kv heads), position table, and
the tokenizer kind (byte-level BPE with eos and no pad for GPT-2 / SmolLM2; a BertTokenizer with
[PAD] and no eos for the Chinese GPT-2), the preset's whole config (mm_layers, n_fusion, n_heads,
FFW / LoRA r512, text length, regularisers), and the MMSA frame counts and feature dims.
Shrunk to keep the test small: the vocabulary of gpt2-large and SmolLM2-1.7B (to the tokenizer's
257 ids) and their MLP width (to 256; the MM blocks' FFW copies the MLP), the text length trained
on (8 tokens; the preset's own length is checked against the backbone), the batch (2), the number
of samples, and training to one optimiser step per stage.
"""

from __future__ import annotations

import json

import pytest
import torch

from deepmlf.backbones.shaped import SHAPES, shaped_backbone
from deepmlf.config import load_config
from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.metrics import key_metric_names
from deepmlf.model import check_model_against
from deepmlf.train import train_run

# (audio frames, audio dim, vision frames, vision dim) of the unaligned MMSA files (DESIGN.md §5).
FEATURES = {"mosi": (375, 5, 500, 20), "mosei": (500, 74, 500, 35), "sims": (400, 33, 55, 709),
            "simsv2": (925, 25, 232, 177)}
SHRINK = {"vocab_size": 257, "mlp_size": 256}
PRESETS = {  # preset -> (dataset, shrink the backbone?)
    "mosei-base": ("mosei", False),
    "sims": ("sims", False),
    "simsv2": ("simsv2", False),
    "mosei-large": ("mosei", True),
    "mosi": ("mosi", True),
}
ONE_STEP = ["data.max_text_len=8", "data.batch_size=2", "data.eval_batch_size=2", "train.grad_accum=1", "train.limit_batches=1",
            "train.max_steps=1", "train.seeds=[7]", "train.mixed_precision=no", "pretrain.grad_accum=1",
            "pretrain.max_epochs=1"]


def _pickle(tmp_path, dataset: str):
    la, da, lv, dv = FEATURES[dataset]
    return write_mmsa_pickle(tmp_path / f"{dataset}.pkl", dataset="sims" if dataset == "simsv2" else dataset,
                             n_per_split=(2, 2, 2), la=la, audio_dim=da, lv=lv, vision_dim=dv)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_builds_and_trains_one_step_on_its_real_shape(preset, tmp_path, monkeypatch):
    dataset, shrink = PRESETS[preset]
    real = load_config(preset=preset)
    cfg = load_config(preset=preset, overrides=[f"data.path={_pickle(tmp_path, dataset)}", *ONE_STEP])
    name = cfg.model.backbone
    assert name in SHAPES and cfg.data.dataset == dataset
    backbone = shaped_backbone(name, **(SHRINK if shrink else {}))
    check_model_against(real, backbone.spec())  # the preset as shipped fits its backbone
    handed_out = []

    def load(requested, **_):  # stands in for the real weights, which are not reachable here
        assert requested == name and not handed_out  # one seed: one backbone, wrapped once
        handed_out.append(backbone)
        return backbone

    monkeypatch.setattr("deepmlf.backbones.load_backbone", load)
    monkeypatch.setattr("deepmlf.backbones.inspect_backbone", lambda requested: backbone.spec())
    torch.manual_seed(0)
    result = train_run(cfg, tmp_path / "run", progress=False)
    assert handed_out == [backbone]

    shape = SHAPES[name]
    assert (backbone.n_layers, backbone.hidden_size) == (shape.n_layers, shape.hidden)
    assert backbone.model.config.num_attention_heads == shape.n_heads
    tok = backbone.tokenizer
    assert (type(tok).__name__ == "BertTokenizer") is (shape.tokenizer == "bert")
    assert tok.eos_token_id == tok.pad_token_id == (0 if shape.tokenizer == "bert" else 256)  # eos = [PAD] / pad = eos

    seed = tmp_path / "run" / "seed-7"
    history = [json.loads(line) for line in (seed / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [1]  # one optimiser step
    assert all(torch.isfinite(torch.tensor(v)) for v in history[0]["train"].values())
    assert (tmp_path / "run" / "stage1" / "best.pt").is_file()  # the authors' one shared stage 1
    assert result.metric_names == list(key_metric_names(dataset)) and 7 in result.per_seed
    gates = json.loads((seed / "gates.json").read_text())
    assert [g["layer"] for g in gates] == cfg.model.mm_layers


@pytest.mark.parametrize("preset", list(PRESETS))
def test_paper_presets_turn_on_the_exact_perf_switches(preset):
    # Exact ones only (tests/model/test_perf.py): bf16 autocast and length-grouped batches change
    # the numbers, checkpointing trades time for memory; those stay the user's choice.
    p = load_config(preset=preset).perf
    assert p.dynamic_padding and p.lm_loss_chunk == 1024 and p.fused_gelu and p.inference_mode and p.pack_tokens
    assert p.fused_adamw
    assert p.autocast == "off" and not p.checkpoint_frozen and not p.prefix_cache
    assert load_config(preset=preset).data.length_grouped == 0
