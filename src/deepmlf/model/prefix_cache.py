"""A bounded in-memory cache of the frozen text prefix: what layers 0..m (m = the first MM layer)
compute for a transcript's real tokens, so an epoch that sees the same transcript again skips them.

Why it is exact: those layers are frozen, text tokens attend causally to real text only, and their
positions are 0..L-1 whatever the batch's padding, so a transcript's keys/values in every prefix
layer and its output under the first MM block are a function of its token ids alone (and of the
backbone, its dtype and device, and the autocast state: part of the key). An augmented batch or one
with the backbone's dropout active computes them afresh (MultimodalLM decides).

Entries hold real positions only; `assemble` zero-fills the pads of a batch, which the attention
mask hides from every real token and fusion token (pad rows are never read by a loss or a head).

Bounded: once `max_bytes` is reached no entry is added (an epoch walks the data in a new order each
time, so keeping the first entries gives a steady hit rate where LRU would evict before reuse).

Shapes: B batch, T text width, L real tokens of one sample, P prefix layers (m + 1), Hk KV heads,
hd head dim, D LM width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PrefixEntry:
    kv: Tensor  # (P, 2, Hk, L, hd) keys and values of the real tokens in layers 0..m
    hidden: Tensor  # (L, D) output of decoder layer m (under the first MM block)

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.kv) + tensor_bytes(self.hidden)


class BoundedCache:
    """key -> entry, at most `max_bytes` in all; once full, nothing is added (see the module doc).

    The one bound of every frozen-state cache (PrefixCache here; TextStateCache, its fusion states
    and SuffixStateCache in multimodal_lm; UMCA's text states). `size(entry)` gives an entry's
    bytes (`entry_bytes` for tensors and tuples of them). Not a Module.
    """

    def __init__(self, max_bytes: int, size) -> None:
        self.max_bytes = int(max_bytes)
        self.size = size
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: dict = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def admit(self, key, entry):
        """Keep `entry` under `key` if it fits; returns the kept entry, or None when full."""
        if key in self._entries:
            return self._entries[key]
        n = self.size(entry)
        if self.nbytes + n > self.max_bytes:
            return None
        self._entries[key] = entry
        self.nbytes += n
        return entry


def tensor_bytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def entry_bytes(entry) -> int:
    """Bytes of a cache entry: a tensor or nested tuples of tensors."""
    if isinstance(entry, Tensor):
        return tensor_bytes(entry)
    return sum(entry_bytes(e) for e in entry)


class PrefixCache(BoundedCache):
    """token ids (+ a fingerprint of backbone dtype, device and autocast) -> PrefixEntry."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, size=lambda e: e.nbytes)

    @staticmethod
    def key(ids: Tensor, fingerprint: tuple) -> tuple:
        """ids: (L,) the real token ids of one transcript."""
        return (fingerprint, ids.cpu().numpy().tobytes())

    def put(self, key: tuple, kv: Tensor, hidden: Tensor) -> PrefixEntry | None:
        """Store a copy; returns it, or None when the cache is full (nothing is evicted)."""
        if key in self._entries:
            return self._entries[key]
        # Own storage (a slice would pin the whole batch's tensor); made outside inference mode so a
        # later training step may save it for backward.
        with torch.inference_mode(False):
            entry = PrefixEntry(kv=kv.detach().clone(), hidden=hidden.detach().clone())
        return self.admit(key, entry)

    @staticmethod
    def assemble(entries: list[PrefixEntry], T: int) -> tuple[Tensor, Tensor]:
        """Per-sample entries -> (P, 2, B, Hk, T, hd) keys/values and (B, T, D) hidden, pads zero."""
        first = entries[0]
        P, two, Hk, _, hd = first.kv.shape
        kv = first.kv.new_zeros(P, two, len(entries), Hk, T, hd)
        hidden = first.hidden.new_zeros(len(entries), T, first.hidden.shape[-1])
        for b, e in enumerate(entries):
            L = e.hidden.shape[0]
            kv[:, :, b, :, :L] = e.kv
            hidden[b, :L] = e.hidden
        return kv, hidden
