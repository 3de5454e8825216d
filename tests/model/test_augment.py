"""Language-embedding augmentation (Table 12): SeqAug permutes real positions only; train-only."""

from __future__ import annotations

import torch

from deepmlf.model import EmbeddingAugment, permute_real_positions, seqaug


def _mask(lengths, T):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def test_permutation_keeps_pads_and_permutes_real_positions():
    torch.manual_seed(0)
    mask = _mask([6, 3, 1, 0], 6)
    for _ in range(20):
        perm = permute_real_positions(mask)
        for b, n in enumerate([6, 3, 1, 0]):
            assert sorted(perm[b, :n].tolist()) == list(range(n))  # a permutation of the reals
            assert perm[b, n:].tolist() == list(range(n, 6))  # pads stay put


def test_permutation_also_for_left_padding():
    mask = torch.tensor([[False, False, True, True, True]])
    perm = permute_real_positions(mask)
    assert perm[0, :2].tolist() == [0, 1]
    assert sorted(perm[0, 2:].tolist()) == [2, 3, 4]


def test_seqaug_p_perm_zero_is_identity_and_one_is_the_permuted_sequence():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 8)
    mask = _mask([5, 3, 2], 5)
    assert torch.equal(seqaug(x, mask, 0.0), x)
    out = seqaug(x, mask, 1.0)  # every channel swapped: rows are a permutation of real rows
    for b, n in enumerate([5, 3, 2]):
        assert torch.equal(out[b, n:], x[b, n:])
        rows = {tuple(r.tolist()) for r in out[b, :n]}
        assert rows == {tuple(r.tolist()) for r in x[b, :n]}


def test_seqaug_swaps_whole_channels_over_time():
    x = torch.randn(2, 6, 64)
    mask = _mask([6, 4], 6)
    torch.manual_seed(1)
    perm = permute_real_positions(mask)  # seqaug draws the permutation first from the same stream
    torch.manual_seed(1)
    out = seqaug(x, mask, 0.5)
    permuted = x.gather(1, perm[..., None].expand_as(x))
    kept = (out == x).all(dim=1)  # (B, D)
    swapped = (out == permuted).all(dim=1)
    assert torch.all(kept | swapped)  # each channel is the original or the permuted sequence, at every step
    moved = (permuted != x).any(dim=1)
    frac = (swapped & ~kept)[moved].float().mean()
    assert 0.3 < frac < 0.7  # about p_perm of the channels are swapped


def test_augment_is_identity_in_eval_and_for_none():
    x = torch.randn(2, 4, 8)
    mask = _mask([4, 2], 4)
    for kind in ("seqaug", "dropout", "noise"):
        aug = EmbeddingAugment(kind=kind, p_apply=1.0, p_perm=0.5, dropout=0.5, noise_std=0.1).eval()
        assert torch.equal(aug(x, mask), x)
    none = EmbeddingAugment(kind="none", p_apply=1.0, p_perm=0.5, dropout=0.5, noise_std=0.1).train()
    assert torch.equal(none(x, mask), x)
    never = EmbeddingAugment(kind="seqaug", p_apply=0.0, p_perm=0.5, dropout=0.5, noise_std=0.1).train()
    assert torch.equal(never(x, mask), x)


def test_dropout_and_noise_kinds_perturb_in_training():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 32)
    mask = _mask([4, 4], 4)
    drop = EmbeddingAugment(kind="dropout", p_apply=1.0, p_perm=0.0, dropout=0.5, noise_std=0.0).train()
    out = drop(x, mask)
    zeroed = out == 0
    assert 0.3 < zeroed.float().mean() < 0.7
    torch.testing.assert_close(out[~zeroed], 2 * x[~zeroed])
    noise = EmbeddingAugment(kind="noise", p_apply=1.0, p_perm=0.0, dropout=0.0, noise_std=0.1).train()
    delta = noise(x, mask) - x
    rms = x.pow(2).mean().sqrt()
    assert 0.05 * rms < delta.std() < 0.2 * rms


def test_seqaug_per_batch_permutation_is_shared_and_includes_pads():
    """The authors' SeqAug: one π of all T positions for the whole batch, pads included."""
    torch.manual_seed(3)
    x = torch.randn(3, 6, 16)
    mask = _mask([6, 2, 4], 6)
    torch.manual_seed(4)
    perm = torch.randperm(6)  # seqaug draws the permutation first
    torch.manual_seed(4)
    out = seqaug(x, mask, 1.0, permutation="per_batch")  # every channel swapped
    assert torch.equal(out, x[:, perm])  # the same π for every sample, pad rows moved like real ones


def test_av_softperm_keeps_each_samples_real_frames_and_leaves_padding():
    """SoftPerm on raw frames (per sample): per channel, the values over a sample's real frames are a
    permutation of the originals, and its padding frames are untouched."""
    from deepmlf.model.augment import FrameSoftPerm

    torch.manual_seed(0)
    lengths = torch.tensor([9, 4, 1, 6])
    x = torch.randn(4, 9, 5) * _mask(lengths.tolist(), 9)[..., None]  # zero padding after each length
    softperm = FrameSoftPerm(p_perm=0.5).train()
    moved = 0
    for _ in range(10):
        out = softperm(x, lengths)
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(out[b, n:], x[b, n:])  # padding untouched
            assert torch.equal(out[b, :n].sort(dim=0).values, x[b, :n].sort(dim=0).values)  # same values per channel
        moved += int(not torch.equal(out, x))
    assert moved > 0
    full = FrameSoftPerm(p_perm=1.0).train()(x, lengths)  # every channel swapped: whole frames permuted
    for b, n in enumerate(lengths.tolist()):
        assert {tuple(r.tolist()) for r in full[b, :n]} == {tuple(r.tolist()) for r in x[b, :n]}
    assert torch.equal(softperm.eval()(x, lengths), x)  # training only
    assert torch.equal(FrameSoftPerm(p_perm=0.0).train()(x, lengths), x)
