"""data.length_grouped (issue 14): batches of similar transcript lengths, every sample once per epoch,
seeded like plain shuffling; what changes is which samples share a batch."""

from __future__ import annotations

import pytest
import torch

from deepmlf.config import DataConfig
from deepmlf.data import load_mmsa, make_loader
from deepmlf.data.dataset import LengthGroupedBatchSampler
from deepmlf.errors import ConfigError


def _epochs(sampler, n=2):
    return [list(sampler) for _ in range(n)]


def test_every_sample_once_per_epoch_seeded_and_new_each_epoch():
    lengths = [(7 * i) % 23 + 1 for i in range(103)]
    a = LengthGroupedBatchSampler(lengths, 8, torch.Generator().manual_seed(1), window=4)
    b = LengthGroupedBatchSampler(lengths, 8, torch.Generator().manual_seed(1), window=4)
    ea, eb = _epochs(a), _epochs(b)
    assert ea == eb  # the order is a function of the generator alone
    assert ea[0] != ea[1]  # a new order each epoch
    for epoch in ea:
        assert len(epoch) == len(a) == 13  # ceil(103 / 8)
        assert sorted(i for batch in epoch for i in batch) == list(range(103))
        assert sorted(len(batch) for batch in epoch)[1:] == [8] * 12  # one partial batch (7)


def test_batches_are_length_sorted_runs_of_their_window():
    # One window over everything: each batch is a run of the descending length order.
    lengths = torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist()
    sampler = LengthGroupedBatchSampler(lengths, 8, torch.Generator().manual_seed(2), window=100)
    got = sorted(sorted((lengths[i] for i in batch), reverse=True) for batch in sampler)
    assert got == sorted([list(range(63 - 8 * k, 55 - 8 * k, -1)) for k in range(8)])


def test_grouping_shrinks_the_longest_transcript_per_batch():
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 51, (640,), generator=g).tolist()
    grouped = LengthGroupedBatchSampler(lengths, 32, torch.Generator().manual_seed(4), window=10)
    plain = torch.randperm(640, generator=torch.Generator().manual_seed(4)).view(20, 32).tolist()

    def mean_longest(batches):
        return sum(max(lengths[i] for i in b) for b in batches) / len(batches)

    assert mean_longest(plain) > 45  # a random batch of 32 nearly always holds a ~50-token one
    assert mean_longest(list(grouped)) < 30  # grouped: about each batch's own length


def test_drop_last_and_bad_sizes():
    s = LengthGroupedBatchSampler([3] * 17, 4, torch.Generator().manual_seed(0), window=2, drop_last=True)
    epoch = list(s)
    assert len(s) == len(epoch) == 4 and all(len(b) == 4 for b in epoch)
    with pytest.raises(ConfigError, match="window=0"):
        LengthGroupedBatchSampler([1], 4, torch.Generator(), window=0)


def test_make_loader_groups_by_token_count(mmsa_pickle, byte_tok):
    split = load_mmsa(mmsa_pickle)["train"]
    kw = dict(max_text_len=8, batch_size=4, shuffle=True, seed=5)
    loader = make_loader(split, byte_tok, length_grouped=100, **kw)
    assert isinstance(loader.batch_sampler, LengthGroupedBatchSampler)
    ids = [i for batch in loader for i in batch.ids]
    assert sorted(ids) == sorted(split.ids)
    # One window over the split: real-token counts are non-increasing across the sorted batches.
    counts = sorted((sorted(b.attention_mask.sum(1).tolist(), reverse=True) for b in loader), reverse=True)
    flat = [c for b in counts for c in b]
    assert flat == sorted(flat, reverse=True)
    # The loader's generator drives it (checkpoints save it): same seed, same sequence.
    again = make_loader(split, byte_tok, length_grouped=100, **kw)
    assert [i for b in again for i in b.ids] == ids
    assert make_loader(split, byte_tok, length_grouped=0, **kw).batch_sampler.__class__.__name__ == "BatchSampler"


def test_off_by_default():
    assert DataConfig().length_grouped == 0
