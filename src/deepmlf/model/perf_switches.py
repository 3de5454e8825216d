"""Hardware checks behind the `perf.autocast` switch (kept free of model imports)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16; Linux flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_autocast(mode: str, device: torch.device | str) -> bool:
    """perf.autocast ("off", "bf16", "auto") -> whether bf16 autocast is on for `device`.
    auto: a CUDA GPU with bf16, or a CPU with AMX/AVX512-BF16 (where fp32 would be slower)."""
    if mode == "off":
        return False
    if mode == "bf16":
        return True
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()
