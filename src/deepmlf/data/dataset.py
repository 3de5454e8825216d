"""From a validated `Split` to model-ready `Batch`es: a torch Dataset, the collate function, a loader.

Text is tokenised per batch with the backbone's own tokenizer, right-padded to exactly
`max_text_len` with truncation, as the authors' loops do (every batch has the same text width,
so fusion-token positions never move). Audio and vision keep the pickle's full frame count L:
the AV encoder pools over real frames using the lengths (DESIGN.md §1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ..errors import BackboneError, ConfigError
from .batch import Batch
from .mmsa import Split


class MSADataset(Dataset):
    """Per-sample dicts over one `Split` (views into its arrays; the collate stacks them)."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.split
        return {
            "raw_text": s.raw_text[i],
            "audio": s.audio[i],  # (La, Da) float32
            "audio_length": int(s.audio_lengths[i]),
            "vision": s.vision[i],  # (Lv, Dv) float32
            "vision_length": int(s.vision_lengths[i]),
            "label": float(s.labels[i]) if s.has_labels else None,
            "id": s.ids[i],
        }


class MSACollate:
    """Samples -> `Batch`. A class rather than a closure so DataLoader workers can pickle it."""

    def __init__(self, tokenizer: Any, max_text_len: int, text_dropout: float = 0.0) -> None:
        if max_text_len < 1:
            raise ConfigError(f"data.max_text_len={max_text_len}: expected at least 1 text token")
        eos = getattr(tokenizer, "eos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        if eos is None and pad is None:
            raise BackboneError(
                f"tokenizer {type(tokenizer).__name__} has neither an eos nor a pad token; "
                "deepmlf needs one to pad transcripts and to stand in for an empty one"
            )
        self.tokenizer = tokenizer
        self.max_text_len = max_text_len
        # Training only (data.text_dropout): each transcript is emptied with this probability, drawn
        # from torch's global RNG (saved in resume points); 0 draws nothing.
        if not 0.0 <= text_dropout <= 1.0:
            raise ConfigError(f"data.text_dropout={text_dropout}: expected a probability in [0, 1]")
        self.text_dropout = float(text_dropout)
        self.pad_id = int(pad if pad is not None else eos)
        # An empty transcript becomes one eos token, so "last real token" (x_tK, eq. 12) always exists.
        self.empty_id = int(eos if eos is not None else pad)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Unpadded token ids per text: truncated to max_text_len, never empty."""
        # Whitespace carries no content: tokenise it as "" (a tokenizer may still add its specials).
        cleaned = [t if t.strip() else "" for t in texts]
        enc = self.tokenizer(cleaned, truncation=True, max_length=self.max_text_len)
        return [list(ids)[: self.max_text_len] or [self.empty_id] for ids in enc["input_ids"]]

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        # Shapes: B batch, T = max_text_len, La/Lv raw frames, Da/Dv feature dims.
        texts = [s["raw_text"] for s in samples]
        if self.text_dropout > 0:
            dropped = (torch.rand(len(texts)) < self.text_dropout).tolist()
            texts = ["" if d else t for t, d in zip(texts, dropped)]
        ids_per_text = self.token_ids(texts)
        b, t = len(samples), self.max_text_len
        input_ids = torch.full((b, t), self.pad_id, dtype=torch.long)  # (B, T), right padding
        attention_mask = torch.zeros((b, t), dtype=torch.long)  # (B, T), 1 = real token
        for row, ids in enumerate(ids_per_text):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        labels = [s["label"] for s in samples]
        return Batch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            audio=torch.from_numpy(np.stack([s["audio"] for s in samples])),  # (B, La, Da)
            audio_lengths=torch.tensor([s["audio_length"] for s in samples], dtype=torch.long),  # (B,)
            vision=torch.from_numpy(np.stack([s["vision"] for s in samples])),  # (B, Lv, Dv)
            vision_lengths=torch.tensor([s["vision_length"] for s in samples], dtype=torch.long),  # (B,)
            # Unlabelled data (prediction) gives labels=None, which tells the model to skip the loss.
            labels=None if any(y is None for y in labels) else torch.tensor(labels, dtype=torch.float32),
            ids=[s["id"] for s in samples],
            text_missing=torch.tensor([not t.strip() for t in texts], dtype=torch.bool),  # (B,)
        )


def make_collate(tokenizer: Any, max_text_len: int, text_dropout: float = 0.0) -> MSACollate:
    """The collate function: tokenise `raw_text` (right padding to exactly `max_text_len`) and stack
    features; `text_dropout` empties each transcript with that probability (training)."""
    return MSACollate(tokenizer, max_text_len, text_dropout)


class ShardedBatchSampler(Sampler[list[int]]):
    """Process `shard` of `num_shards` takes every num_shards-th batch of the full (shuffled) order.

    Every process walks the whole base order, so the shuffle generator advances identically on all
    of them (exact resume stays per-process state). Each gets len(base) // num_shards batches: the
    same count everywhere, or DDP would wait forever on a process that has one batch more.
    """

    def __init__(self, base: BatchSampler, shard: int, num_shards: int) -> None:
        self.base, self.shard, self.num_shards = base, shard, num_shards

    def __len__(self) -> int:
        return len(self.base) // self.num_shards

    def __iter__(self):
        n = len(self)
        for i, batch in enumerate(self.base):
            if i // self.num_shards >= n:
                continue  # keep consuming the base order; the remainder is dropped this epoch
            if i % self.num_shards == self.shard:
                yield batch


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of transcripts of similar length (data.length_grouped), so that perf.dynamic_padding
    runs each batch at about its own transcripts' length instead of the longest of a random batch
    (transformers' LengthGroupedSampler idea).

    Each epoch: a random permutation drawn from `generator` (as RandomSampler draws it), cut into
    windows of `window` batches; each window sorted by length (longest first, ties in permutation
    order) and cut into batches; then the epoch's batches shuffled (same generator). Every sample
    appears once per epoch and the order is a function of the generator alone (seeded, resumable);
    what differs from plain shuffling is which samples share a batch: similar lengths do.
    """

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator, *, window: int = 50,
                 drop_last: bool = False) -> None:
        if batch_size < 1 or window < 1:
            raise ConfigError(f"length-grouped batches: batch_size={batch_size}, window={window}; expected >= 1")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size, self.window, self.drop_last = batch_size, window, drop_last
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        order = torch.randperm(n, generator=self.generator)
        span = bs * self.window
        batches: list[list[int]] = []
        for start in range(0, n, span):
            chunk = order[start:start + span]
            ranked = chunk[torch.sort(self.lengths[chunk], descending=True, stable=True).indices].tolist()
            batches += [ranked[i:i + bs] for i in range(0, len(ranked), bs)]
        if self.drop_last and batches and len(batches[-1]) < bs:
            batches.pop()
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]


def make_loader(
    split: Split,
    tokenizer: Any,
    *,
    max_text_len: int,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    shard: int = 0,
    num_shards: int = 1,
    text_dropout: float = 0.0,
    length_grouped: int = 0,
) -> DataLoader:
    """A DataLoader of `Batch`es. With shuffle, the order is a function of `seed` alone: two loaders
    with the same seed yield the same sequence of epochs (each epoch draws a new permutation).
    `num_shards` > 1 gives process `shard` its share of the batches (ShardedBatchSampler).
    `length_grouped` > 0 (with shuffle): batches of similar transcript lengths, grouped within windows
    of that many batches (LengthGroupedBatchSampler; data.length_grouped)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: expected at least 1")
    generator = torch.Generator()
    generator.manual_seed(seed)
    dataset = MSADataset(split)
    collate = make_collate(tokenizer, max_text_len, text_dropout)
    if shuffle and length_grouped:
        # Token counts as the collate will cut them (a text dropped by text_dropout is shorter still).
        lengths = [len(ids) for ids in collate.token_ids([str(t) for t in split.raw_text])]
        batches: Sampler = LengthGroupedBatchSampler(lengths, batch_size, generator, window=length_grouped,
                                                     drop_last=drop_last)
    else:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    if num_shards > 1:
        if len(batches) < num_shards:
            raise ConfigError(
                f"split {split.name!r} has {len(batches)} batch(es) of {batch_size}, fewer than the "
                f"{num_shards} training processes: lower data.batch_size or use fewer processes"
            )
        batches = ShardedBatchSampler(batches, shard, num_shards)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        generator=generator,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
