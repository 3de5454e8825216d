"""Token-level KD: weight 0 is CE, exact KL values, tokenizer checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepmlf.backbones.tiny import bert_char_tokenizer, byte_tokenizer
from deepmlf.errors import ConfigError
from deepmlf.losses.token_kd import check_same_tokenizer, token_kd_loss


def test_kd_weight_zero_is_ce():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    y = torch.randint(0, 11, (2, 5), generator=g)
    y[0, 3:] = -100
    out = token_kd_loss(s, y, t, ce_weight=1.0, kd_weight=0.0)
    assert torch.equal(out.loss, F.cross_entropy(s.flatten(0, 1), y.flatten(), ignore_index=-100))
    assert out.kl.item() == 0.0


def test_one_position_kl_exact():
    s = torch.tensor([[0.0, 0.0]])  # uniform student
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher p = (3/4, 1/4) at T = 1
    y = torch.tensor([0])
    kl1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    out = token_kd_loss(s, y, t, ce_weight=0.0, kd_weight=1.0, temperature=1.0)
    assert out.kl.item() == pytest.approx(kl1, abs=1e-6) and out.loss.item() == pytest.approx(kl1, abs=1e-6)
    # T = 2: the teacher's logits halve, p = (√3, 1) / (1 + √3); with T² the KL is 4x.
    p = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert token_kd_loss(s, y, t, kd_weight=1.0, temperature=2.0).kl.item() == pytest.approx(kl2, abs=1e-6)
    both = token_kd_loss(s, y, t, ce_weight=0.7, kd_weight=0.3, temperature=2.0, t2_scale=True)
    assert both.kl.item() == pytest.approx(4 * kl2, abs=1e-6)
    assert both.loss.item() == pytest.approx(0.7 * math.log(2) + 0.3 * 4 * kl2, abs=1e-6)


def test_ignored_positions_do_not_count():
    s = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [-9.0, 9.0]])
    out = token_kd_loss(s, torch.tensor([0, -100]), t, kd_weight=1.0, temperature=1.0)
    assert out.kl.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)


def test_shape_mismatch_and_bad_temperature():
    with pytest.raises(ConfigError, match="share the tokenizer"):
        token_kd_loss(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), torch.zeros(3, 5), kd_weight=1.0)
    with pytest.raises(ConfigError, match="temperature=0"):
        token_kd_loss(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), temperature=0)


def test_mismatched_tokenizers_rejected():
    check_same_tokenizer(byte_tokenizer(), byte_tokenizer())
    with pytest.raises(ConfigError, match="token-level KD needs one tokenizer: student has"):
        check_same_tokenizer(byte_tokenizer(), bert_char_tokenizer())
