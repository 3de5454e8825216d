"""Where rationales come from (MulCoT-RD's "teacher"): a file, a local causal LM, or the probe's
symbolic teacher.

* `read_rationales(path)`: JSONL `{"id", "rationale"}` per line (MulCoT-RD's `cot` key accepted),
  or a JSON list of such objects (MulCoT-RD's own test.json layout).
* `teach_with_lm(...)`: any local causal LM prompted with the transcript, greedy, run once;
  only rationales whose parsed label is right are kept (MulCoT-RD's `initial_correct` filter).
  It sees the transcript only: a text LM cannot hear or see, and the docs say so.
* `probe_rationales(...)`: NOT an LLM. A template that knows the fusion probe's hidden cues
  (v, s, c) and writes correct rationales; it exists so the mechanics can be demonstrated
  without a multimodal teacher (none is reachable offline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import DataError
from .format import format_rationale, parse_prediction

RATIONALE_KEYS = ("rationale", "cot")  # ours, MulCoT-RD's
SYMBOLIC_TEACHER = "symbolic probe teacher (a template that knows the hidden cues v, s, c; not a language model)"


# --------------------------------------------------------------------------------------- files
def read_rationales(path: str | Path) -> dict[str, str]:
    """id -> rationale. Bad lines are errors naming the file, the line and the expected keys."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: rationale file not found (expected JSONL lines {{\"id\", \"rationale\"}})")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = list(enumerate(json.loads(stripped), start=1))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        where = "item"
    else:
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON object ({e.msg})") from None
        where = "line"
    out: dict[str, str] = {}
    for n, rec in records:
        if not isinstance(rec, dict) or "id" not in rec:
            raise DataError(f"{path} {where} {n}: expected an object with keys 'id' and 'rationale' (or 'cot')")
        key = next((k for k in RATIONALE_KEYS if k in rec), None)
        if key is None or not isinstance(rec[key], str):
            raise DataError(f"{path} {where} {n} (id {rec['id']!r}): no string 'rationale' (or 'cot') field")
        rid = str(rec["id"])
        if rid in out:
            raise DataError(f"{path} {where} {n}: id {rid!r} appears twice")
        out[rid] = rec[key]
    if not out:
        raise DataError(f"{path}: no rationales in the file")
    return out


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> Path:
    from ..io import write_text

    path = Path(path)
    write_text(path, "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in records))
    return path


# --------------------------------------------------------------------------------------- symbolic teacher
def polarity_word(x: float) -> str:
    return "positive" if x > 0 else "negative" if x < 0 else "neutral"


def face_word(c: float) -> str:
    """The probe's smile intensity c in [-1, 1], in three bins of equal width."""
    return "smile" if c > 1 / 3 else "frown" if c < -1 / 3 else "neutral"


def probe_rationale(*, valence: int, tone: int, smile: float, score: float, word: str | None = None) -> str:
    """The symbolic teacher's rationale for one probe sample (fields Text, Voice, Face, Prediction)."""
    text = ("very " if abs(valence) == 2 else "") + polarity_word(valence)
    if word:
        text += f" ({word})"
    return format_rationale({
        "Text": text,
        "Voice": "sarcastic" if tone < 0 else "sincere",
        "Face": face_word(smile),
        "Prediction": f"{score:.1f}",
    })


def probe_rationales(data: Mapping[str, Mapping[str, Any]], latents: Mapping[str, Mapping[str, np.ndarray]], *,
                     label_scale: float = 1.0, label_range: tuple[float, float] = (-3.0, 3.0),
                     with_word: bool = True) -> dict[str, str]:
    """id -> rationale for every split of a probe (`make_probe` dict + `probe_latents`). The
    Prediction is the noise-free score clip(k (s v + c)) the cues imply (what the teacher can know);
    `with_word` adds the sentiment word of the transcript to the Text field, "positive (great)"."""
    from ..data.synth import ADJECTIVES, VERBS

    lexicon = {w for words in (*ADJECTIVES.values(), *VERBS.values()) for w in words}
    lo, hi = label_range
    out: dict[str, str] = {}
    for name, split in data.items():
        lat = latents[name]
        for i, sid in enumerate(split["id"]):
            v, s, c = int(lat["valence"][i]), int(lat["tone"][i]), float(lat["smile"][i])
            word = next((w for w in str(split["raw_text"][i]).split() if w in lexicon), None) if with_word else None
            score = float(np.clip(label_scale * (s * v + c), lo, hi))
            out[str(sid)] = probe_rationale(valence=v, tone=s, smile=c, score=score, word=word)
    return out


# --------------------------------------------------------------------------------------- local LM teacher
DEFAULT_PROMPT = (
    "Analyse the sentiment of this video transcript on a scale from -3 (very negative) to 3 (very positive).\n"
    "Transcript: \"{text}\"\n"
    "Answer in the form: Text: <analysis>. Conclusion: <one sentence>. Prediction: <score>\n"
    "Text:"
)


def label_is_right(parsed: float | None, label: float, *, tolerance: float | None) -> bool:
    """A parsed score is right when it has the label's polarity (negative / neutral / positive), or,
    with a tolerance, when it is within it of the label."""
    if parsed is None or not np.isfinite(parsed):
        return False
    if tolerance is not None:
        return abs(parsed - label) <= tolerance
    return np.sign(parsed) == np.sign(label)


def teach_with_lm(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[float], ids: Sequence[str], *,
                  prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 64, batch_size: int = 8,
                  tolerance: float | None = None) -> tuple[list[dict[str, Any]], int]:
    """Greedy rationales from a local causal LM; returns (kept records, number generated).
    Each kept record: {"id", "rationale", "parsed", "label"}."""
    import torch

    if "{text}" not in prompt:
        raise DataError("--prompt: the template must contain {text} (where the transcript goes)")
    tokenizer.padding_side = "left"  # generation continues every row from its own last token
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kept: list[dict[str, Any]] = []
    n = 0
    for start in range(0, len(texts), batch_size):
        chunk = [prompt.format(text=t) for t in texts[start:start + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        outs = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for j, body in enumerate(outs):
            n += 1
            rationale = "Text:" + body.split("\n\n")[0]
            parsed = parse_prediction(rationale)
            label = float(labels[start + j])
            if label_is_right(parsed, label, tolerance=tolerance):
                kept.append({"id": str(ids[start + j]), "rationale": rationale.strip(), "parsed": parsed,
                             "label": label})
    return kept, n
