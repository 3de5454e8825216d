"""MSADataset / make_collate / make_loader: exact token ids and masks, full-length features, seeded order."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from deepmlf.data import Batch, MSADataset, load_mmsa, make_collate, make_loader
from deepmlf.data.testing import write_mmsa_pickle
from deepmlf.errors import BackboneError, ConfigError

EOS = 256  # byte tokenizer: 256 byte tokens, then <|endoftext|> (= pad)


def _sample(text: str, label: float | None = 0.5, la: int = 3, lv: int = 2) -> dict:
    return {
        "raw_text": text,
        "audio": np.ones((la, 2), np.float32),
        "audio_length": la,
        "vision": np.ones((lv, 4), np.float32),
        "vision_length": lv,
        "label": label,
        "id": text,
    }


def _bos_tokenizer() -> PreTrainedTokenizerFast:
    """Byte tokenizer whose template adds a BOS (as Llama tokenizers do) and that has no pad token."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)} | {"</s>": 256, "<s>": 257}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 257)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def test_text_is_right_padded_to_exactly_max_text_len(byte_tok):
    batch = make_collate(byte_tok, 6)([_sample("hi"), _sample("abc")])
    assert isinstance(batch, Batch)
    # Byte-level alphabet sorted: '!' (33) is id 0, so 'h' (104) -> 71, 'i' -> 72, 'a' -> 64.
    assert batch.input_ids.tolist() == [[71, 72, EOS, EOS, EOS, EOS], [64, 65, 66, EOS, EOS, EOS]]
    assert batch.attention_mask.tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]]
    assert batch.input_ids.dtype == torch.long and batch.attention_mask.dtype == torch.long


def test_long_text_is_truncated(byte_tok):
    batch = make_collate(byte_tok, 4)([_sample("hello world"), _sample("é")])  # é is two bytes
    assert batch.input_ids.tolist() == [[71, 68, 75, 75], [127, 102, EOS, EOS]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_or_blank_transcript_is_one_eos_token(byte_tok, text):
    batch = make_collate(byte_tok, 4)([_sample(text), _sample("ok")])
    assert batch.input_ids.tolist() == [[EOS, EOS, EOS, EOS], [78, 74, EOS, EOS]]
    assert batch.attention_mask.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0]]
    # "last real token" index = mask.sum - 1 is defined for every row
    assert (batch.attention_mask.sum(1) - 1).tolist() == [0, 1]


def test_tokenizer_specials_are_kept_and_pad_falls_back_to_eos():
    tok = _bos_tokenizer()
    assert tok.pad_token is None
    collate = make_collate(tok, 5)
    batch = collate([_sample("hi"), _sample(""), _sample("abcdefg")])
    assert batch.input_ids.tolist() == [
        [257, 71, 72, 256, 256],
        [257, 256, 256, 256, 256],  # "" with the tokenizer's own BOS: already one real token
        [257, 64, 65, 66, 67],
    ]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_tokenizer_without_eos_or_pad_is_rejected(byte_tok):
    tok = _bos_tokenizer()
    tok.eos_token = None
    with pytest.raises(BackboneError, match="has neither an eos nor a pad token"):
        make_collate(tok, 5)
    with pytest.raises(ConfigError, match="max_text_len=0"):
        make_collate(byte_tok, 0)


def test_features_keep_the_full_frame_count_and_values(mmsa_pickle, byte_tok):
    split = load_mmsa(mmsa_pickle)["valid"]
    ds = MSADataset(split)
    assert len(ds) == 8
    item = ds[3]
    assert item["raw_text"] == split.raw_text[3] and item["id"] == split.ids[3]
    assert item["audio_length"] == split.audio_lengths[3] and item["label"] == pytest.approx(float(split.labels[3]))

    batch = make_collate(byte_tok, 16)([ds[i] for i in (5, 1, 2)])
    assert batch.audio.shape == (3, 30, 5) and batch.vision.shape == (3, 40, 20)  # the pickle's L, not the max length
    assert batch.audio.dtype == torch.float32 and batch.vision.dtype == torch.float32
    np.testing.assert_array_equal(batch.audio.numpy(), split.audio[[5, 1, 2]])
    np.testing.assert_array_equal(batch.vision.numpy(), split.vision[[5, 1, 2]])
    assert batch.audio_lengths.dtype == torch.long and batch.vision_lengths.dtype == torch.long
    assert batch.audio_lengths.tolist() == split.audio_lengths[[5, 1, 2]].tolist()
    assert batch.vision_lengths.tolist() == split.vision_lengths[[5, 1, 2]].tolist()
    assert batch.labels.dtype == torch.float32
    np.testing.assert_array_equal(batch.labels.numpy(), split.labels[[5, 1, 2]])
    assert batch.ids == [split.ids[i] for i in (5, 1, 2)]
    assert len(batch) == 3
    expected_ids = byte_tok(split.raw_text[5])["input_ids"][:16]
    assert batch.input_ids[0, : len(expected_ids)].tolist() == expected_ids


def test_unlabelled_split_gives_labels_none(tmp_path, byte_tok):
    path = write_mmsa_pickle(tmp_path / "p.pkl", train=None, valid=None, test__regression_labels=None)
    split = load_mmsa(path, require_labels=False)["test"]
    batch = next(iter(make_loader(split, byte_tok, max_text_len=8, batch_size=4, shuffle=False)))
    assert batch.labels is None and len(batch) == 4
    assert batch.to("cpu").labels is None


def _order(loader) -> list[str]:
    return [i for batch in loader for i in batch.ids]


def test_seeded_shuffling_is_reproducible(mmsa_pickle, byte_tok):
    split = load_mmsa(mmsa_pickle)["train"]
    kw = dict(max_text_len=8, batch_size=5, shuffle=True)
    a = make_loader(split, byte_tok, seed=3, **kw)
    b = make_loader(split, byte_tok, seed=3, **kw)
    a1, a2 = _order(a), _order(a)
    assert a1 == _order(b) and a2 == _order(b)  # same seed: same sequence of epochs
    assert a1 != a2  # each epoch draws a new permutation
    assert sorted(a1) == sorted(split.ids)
    assert _order(make_loader(split, byte_tok, seed=4, **kw)) != a1
    plain = make_loader(split, byte_tok, max_text_len=8, batch_size=5, shuffle=False, seed=3)
    assert _order(plain) == split.ids
    assert [len(batch) for batch in plain] == [5, 5, 5, 5, 4]


def test_drop_last_and_workers(mmsa_pickle, byte_tok):
    split = load_mmsa(mmsa_pickle)["train"]
    loader = make_loader(split, byte_tok, max_text_len=8, batch_size=5, shuffle=False, drop_last=True)
    assert [len(batch) for batch in loader] == [5, 5, 5, 5]
    # The collate function pickles (DataLoader workers under spawn/forkserver need that) ...
    collate = pickle.loads(pickle.dumps(make_collate(byte_tok, 8)))
    assert collate([_sample("hi")]).input_ids.tolist() == [[71, 72] + [EOS] * 6]
    # ... and a worker process yields the same batches as the main process.
    in_main = list(make_loader(split, byte_tok, max_text_len=8, batch_size=12, shuffle=True, seed=1))
    in_worker = list(make_loader(split, byte_tok, max_text_len=8, batch_size=12, shuffle=True, seed=1, num_workers=1))
    assert [b.ids for b in in_worker] == [b.ids for b in in_main]
    assert all(torch.equal(x.input_ids, y.input_ids) and torch.equal(x.audio, y.audio) for x, y in zip(in_main, in_worker))
