"""AV encoder (eq. 6): length-aware pooling values, masking invariants, stage-1 regressor, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from deepmlf.errors import CheckpointError
from deepmlf.io import torch_save
from deepmlf.model import (
    AVEncoder,
    build_av_regressor,
    length_aware_pool,
    load_av_encoder_checkpoint,
    masked_mean,
    sinusoidal_positions,
)

from deepmlf.config import AVEncoderConfig

from .conftest import AUDIO_DIM, VISION_DIM, make_batch, small_config


def _encoder(**kw) -> AVEncoder:
    cfg = AVEncoderConfig(**{**dict(d_av=8, av_len=4, n_layers=1, n_heads=2, ffn_mult=4, dropout=0.1), **kw})
    torch.manual_seed(0)
    return AVEncoder(AUDIO_DIM, VISION_DIM, cfg).eval()


def test_pool_exact_values_on_hand_example():
    x = torch.arange(6, dtype=torch.float32)[None, :, None].repeat(4, 1, 1)  # frame f has value f
    lengths = torch.tensor([3, 5, 1, 0])
    pooled, mask = length_aware_pool(x, lengths, steps=2)
    # len 3 -> windows [0,1), [1,3); len 5 -> [0,2), [2,5); len 1 -> one step; len 0 -> none.
    expected = torch.tensor([[0.0, 1.5], [0.5, 3.0], [0.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(pooled[..., 0], expected)
    assert mask.tolist() == [[True, True], [True, True], [True, False], [False, False]]


def test_pool_long_sequence_averages_contiguous_windows():
    x = torch.randn(1, 10, 3)
    pooled, mask = length_aware_pool(x, torch.tensor([10]), steps=3)  # windows [0,3), [3,6), [6,10)
    torch.testing.assert_close(pooled[0], torch.stack([x[0, 0:3].mean(0), x[0, 3:6].mean(0), x[0, 6:10].mean(0)]))
    assert mask.all()


def test_sinusoidal_positions_table():
    table = sinusoidal_positions(5, 8)
    assert table.shape == (5, 8)
    torch.testing.assert_close(table[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin 0 | cos 0
    assert table[3, 0] == pytest.approx(math.sin(3.0))
    assert sinusoidal_positions(3, 7).shape == (3, 7)


def test_masked_mean_ignores_masked_steps():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == pytest.approx(2.0)


def test_encoder_output_shapes_and_mask():
    enc = _encoder()
    b = make_batch()
    out = enc.encode_batch(b)
    assert out.z.shape == (4, 4, 8) and out.mask.shape == (4, 4)
    # Sample 3 has 1 audio frame and 3 vision frames -> 3 real steps in the union.
    assert out.mask[3].tolist() == [True, True, True, False]
    assert torch.all(out.z[~out.mask] == 0)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_padded_frames_do_not_change_z(batchnorm):
    enc = _encoder(batchnorm=batchnorm)
    b = make_batch()
    ref = enc.encode_batch(b)
    garbage = make_batch()
    for x, lengths in ((garbage.audio, garbage.audio_lengths), (garbage.vision, garbage.vision_lengths)):
        pad = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        x[pad] = 1e4 * torch.randn_like(x[pad])
    out = enc.encode_batch(garbage)
    torch.testing.assert_close(out.z, ref.z)
    assert torch.equal(out.mask, ref.mask)


def test_batchnorm_statistics_use_real_steps_only():
    enc = _encoder(batchnorm=True).train()
    b = make_batch()
    pooled, mask = length_aware_pool(b.audio, b.audio_lengths, 4)
    enc.encode_batch(b)
    bn = enc.audio.batchnorm
    torch.testing.assert_close(bn.running_mean, bn.momentum * pooled[mask].mean(0))


def test_av_regressor_output_and_loss():
    cfg = small_config()
    model = build_av_regressor(cfg, AUDIO_DIM, VISION_DIM).eval()
    b = make_batch()
    out = model(b)
    assert out.y_av.shape == (4,)
    assert out.prediction is out.y_av
    torch.testing.assert_close(out.loss, (out.y_av - b.labels).abs().mean())
    assert set(out.loss_terms) == {"task"}
    b.labels = None
    assert model(b).loss is None
    b.labels = torch.tensor([0.1, float("nan"), 0.0, 1.0])
    assert model(b).loss is None


def test_stage1_readout_last_reads_the_last_real_step():
    """pretrain.readout=last (authors' BI_ENC): the head reads Z at each sample's last real step."""
    from deepmlf.model.av_encoder import last_real_step

    z = torch.arange(24, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    assert last_real_step(z, mask).tolist() == [z[0, 2].tolist(), z[1, 0].tolist()]
    cfg = small_config()
    cfg.pretrain.readout = "last"
    model = build_av_regressor(cfg, AUDIO_DIM, VISION_DIM).eval()
    b = make_batch()
    enc = model.encoder.encode_batch(b)
    expected = model.head(last_real_step(enc.z, enc.mask)).squeeze(-1)
    torch.testing.assert_close(model(b).y_av, expected)
    assert not torch.allclose(expected, model.head(masked_mean(enc.z, enc.mask)).squeeze(-1))


def test_av_softperm_acts_in_training_of_both_stages_only():
    """model.av_encoder.softperm: the encoder (shared by the stage-1 regressor and DeepMLF) permutes
    raw frames in training; eval is unchanged, and p_perm 0 adds nothing."""
    quiet = dict(dropout=0.0)
    plain, permuting = _encoder(**quiet), _encoder(**quiet, softperm={"p_perm": 1.0})
    b = make_batch()
    args = (b.audio, b.audio_lengths, b.vision, b.vision_lengths)
    torch.testing.assert_close(permuting(*args).z, plain(*args).z)  # eval: identical
    assert plain.audio.softperm is None and set(plain.state_dict()) == set(permuting.state_dict())
    torch.manual_seed(0)
    assert not torch.allclose(permuting.train()(*args).z, plain.train()(*args).z)
    regressor = build_av_regressor(small_config(av_encoder={"softperm": {"p_perm": 0.3}}), AUDIO_DIM, VISION_DIM)
    assert regressor.encoder.vision.softperm.p_perm == 0.3


def test_stage1_checkpoint_round_trip_and_errors(tmp_path):
    cfg = small_config()
    stage1 = build_av_regressor(cfg, AUDIO_DIM, VISION_DIM)
    path = tmp_path / "best.pt"
    torch_save({"av_encoder": stage1.encoder.state_dict(), "config": cfg.to_dict()}, path)

    torch.manual_seed(123)
    fresh = build_av_regressor(cfg, AUDIO_DIM, VISION_DIM).encoder
    load_av_encoder_checkpoint(fresh, path)
    for k, v in stage1.encoder.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k

    wider = build_av_regressor(cfg, AUDIO_DIM + 1, VISION_DIM).encoder
    with pytest.raises(CheckpointError, match=r"audio\.proj\.weight.*shape"):
        load_av_encoder_checkpoint(wider, path)
    with_bn = build_av_regressor(small_config(av_encoder={"batchnorm": True}), AUDIO_DIM, VISION_DIM).encoder
    with pytest.raises(CheckpointError, match=r"missing keys .*batchnorm"):
        load_av_encoder_checkpoint(with_bn, path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_av_encoder_checkpoint(fresh, tmp_path / "nope.pt")
    torch_save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="'av_encoder'"):
        load_av_encoder_checkpoint(fresh, tmp_path / "other.pt")
