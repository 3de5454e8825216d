"""Real transcript lengths in tokens (what dynamic padding pays for instead of data.max_text_len).

    .venv/bin/python benchmarks/transcript_lengths.py [--meld DIR] [--max-len 50]

Tokenizer: SmolLM2's byte-level BPE (49,152 entries, GPT-2-style; from the de-quantised backbone cache,
`deepmlf backbones` builds it). GPT-2's own vocabulary is not available offline. Sets: the demo's
fusion probe (`deepmlf.data.synth`, as `deepmlf demo` draws it) and the MELD utterances (train/dev/test CSV).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np


def lengths(tokenizer, texts: list[str], max_len: int) -> np.ndarray:
    ids = tokenizer([t if t.strip() else "" for t in texts])["input_ids"]
    return np.array([min(max(1, len(x)), max_len) for x in ids])


def describe(name: str, n: np.ndarray, max_len: int, batch: int = 32, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    longest = [n[rng.choice(len(n), batch, replace=False)].max() for _ in range(200)]
    return (f"| {name} | {len(n)} | {n.mean():.1f} | {int(np.median(n))} | {np.percentile(n, 95):.0f} | "
            f"{(n >= max_len).mean() * 100:.1f} % | {statistics.mean(longest):.1f} | {n.mean() / max_len:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meld", default="/work/shared/data/meld")
    ap.add_argument("--max-len", type=int, default=50)
    ap.add_argument("--probe-max-len", type=int, default=16, help="the demo preset's data.max_text_len")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from deepmlf.backbones.gguf_cache import backbone_cache_dir
    from deepmlf.data.synth import make_probe

    tok = AutoTokenizer.from_pretrained(str(backbone_cache_dir("smollm2-135m")))
    print("| transcripts | n | mean tokens | median | p95 | at cap | mean longest of 32 | mean / cap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    probe = make_probe(n=1000, seed=0, preset="mosi")
    texts = [str(t) for s in probe.values() for t in s["raw_text"]]
    print(describe(f"fusion probe (cap {args.probe_max_len})", lengths(tok, texts, args.probe_max_len),
                   args.probe_max_len))
    import pandas as pd

    utts = [str(u) for f in sorted(Path(args.meld).glob("*_sent_emo.csv")) for u in pd.read_csv(f)["Utterance"]]
    print(describe(f"MELD utterances (cap {args.max_len})", lengths(tok, utts, args.max_len), args.max_len))
    print(describe(f"MELD utterances (cap {args.probe_max_len})", lengths(tok, utts, args.probe_max_len),
                   args.probe_max_len))


if __name__ == "__main__":
    main()
