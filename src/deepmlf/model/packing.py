"""Token-wise work on real positions only (`perf.pack_tokens`, issue 14; docs/performance.md).

The frozen decoder layers' MLPs and attention projections (q/k/v in, out) and the MM blocks' FFWs
act on each position alone. A pad position (attention mask 0: right padding of the transcript or of
a rationale suffix) is never attended to (masked as a key in every layer) and no head or loss reads
it, so what those parts compute there is dead work: about a third of the text positions at the
issue's uniform lengths. Packed, they run on the (N_real, D) rows gathered from (B, N, D) and their
result is scattered back: a frozen module's output as zeros at pads (a pad's keys and values are
then 0, masked anyway; the MLP's and the out projection's zeros are added to the residual, so a
pad keeps its state), the FFW's residual update added at real rows only. Real positions get the
same arithmetic as the default path; pad positions carry other (finite) states, which nothing
reads, so outputs and gradients at real positions are the default path's (tests/model/test_perf.py).

Position 0 of each row is always treated as real: a row without any real token (an empty
transcript) is read at position 0 by the heads (`last` real token, clamped to 0).

Shapes: B batch, N positions of the pass's hidden states, D width.
"""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from typing import Callable, Iterator

from torch import Tensor, nn


class RealTokens:
    """The real positions of a (B, N) pass: a bool mask and its flat row indices."""

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask  # (B, N) bool, True = real
        self.shape = tuple(mask.shape)
        self.index = mask.reshape(-1).nonzero().squeeze(1)  # (N_real,) rows of the flattened (B*N, D)

    @classmethod
    def of(cls, query_mask: Tensor) -> "RealTokens | None":
        """From the pass's query mask (B, N) (nonzero = real); None when every position is real
        (nothing to pack: the default path runs)."""
        mask = query_mask.bool().clone()
        mask[:, :1] = True  # a row without real tokens is read at position 0
        if bool(mask.all()):
            return None
        return cls(mask)

    def slice(self, start: int, stop: int | None = None) -> "RealTokens | None":
        """The positions [start, stop) of each row (an MM block's text, fusion or suffix part),
        without the position-0 rule (that position belongs to the whole pass)."""
        mask = self.mask[:, start:stop]
        if mask.shape[1] == 0 or bool(mask.all()):
            return None
        return RealTokens(mask)

    def gather(self, x: Tensor) -> Tensor:  # (B, N, D) -> (N_real, D)
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def scatter_zeros(self, y: Tensor) -> Tensor:  # (N_real, D) -> (B, N, D), zeros at pads
        B, N = self.shape
        return y.new_zeros(B * N, y.shape[-1]).index_copy(0, self.index, y).view(B, N, -1)

    def add_at(self, x: Tensor, delta: Tensor) -> Tensor:  # x (B, N, D) + delta (N_real, D) at real rows
        return x.reshape(-1, x.shape[-1]).index_add(0, self.index, delta.to(x.dtype)).view(x.shape)


def residual_update(fn: Callable[[Tensor], Tensor], x: Tensor, real: RealTokens | None) -> Tensor:
    """x + fn(x) (fn token-wise), computed at real positions only when `real` is given; pads keep x."""
    if real is None:
        return x + fn(x)
    return real.add_at(x, fn(real.gather(x)))


class TokenPacking:
    """The real positions of the current backbone pass, read by the packed frozen modules (forward
    hooks) and the MM blocks. Set by MultimodalLM around each pass; not a Module."""

    def __init__(self) -> None:
        self.current: RealTokens | None = None
        self._packed: list[RealTokens | None] = []  # module calls in flight (pre-hook packed, hook scatters)
        self._handles: list = []

    @property
    def installed(self) -> bool:
        return bool(self._handles)

    @contextmanager
    def hold(self, real: RealTokens | None) -> Iterator[None]:
        previous, self.current = self.current, real
        self._packed.clear()  # held between layers, never inside a hooked module's call
        try:
            yield
        finally:
            self.current = previous

    def for_pass(self, attention_mask: Tensor, n_query: int) -> contextlib.AbstractContextManager:
        """The context of one HF pass: its queries are the last `n_query` columns of the attention
        mask (the rest is a KV cache's past). Nothing is packed when the hooks are not installed."""
        if not self.installed:
            return contextlib.nullcontext()
        return self.hold(RealTokens.of(attention_mask[:, -n_query:]))

    def current_for(self, x: Tensor) -> RealTokens | None:
        """The pass's real positions if they describe x (B, N, ...), else None."""
        real = self.current
        return real if real is not None and tuple(x.shape[:2]) == real.shape else None

    # ------------------------------------------------------------------ the frozen token-wise modules
    def install(self, modules: list[nn.Module]) -> None:
        """Pack every module of `modules` (token-wise (B, N, D_in) -> (B, N, D_out): the frozen MLPs and
        attention projections) while a pass is held."""
        self.remove()
        for m in modules:
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _pre(self, module: nn.Module, args: tuple):
        if not args:
            self._packed.append(None)
            return None
        real = self.current_for(args[0])
        if real is None:
            if self.current is not None and args[0].dim() == 3:
                raise RuntimeError(f"pack_tokens: a token-wise module saw {tuple(args[0].shape)} in a pass of {self.current.shape}")
            self._packed.append(None)
            return None
        self._packed.append(real)
        return (real.gather(args[0]), *args[1:])

    def _post(self, module: nn.Module, args: tuple, output: Tensor):
        real = self._packed.pop() if self._packed else None
        return None if real is None else real.scatter_zeros(output)

