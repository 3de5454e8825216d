"""MAGTKD's context + speaker prompt (eq. 1-3), as token lists.

    C_k = s_1: t_1  s_2: t_2 ... s_k: t_k                    (eq. 1, the dialogue so far)
    P_k = For s_k: t_k Now s_k feels <mask>                  (eq. 2, "paper")
    P_k = Now s_k feels <mask>                               ("authors": their code does not repeat "For s_k: t_k")
    F_k = Encoder(C_k </s> P_k) read at <mask>               (eq. 3)

A causal LM has no mask token: the prompt ends at "feels" and the feature is the last position's
state (the one that predicts the next word, the emotion). Utterance segments and prompts are
tokenised separately and concatenated, so utterance k's input is exactly
ids(seg_1) + ... + ids(seg_k) + ids(P_k) however it is computed (shared prefix or one pass each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

PromptStyle = Literal["paper", "authors"]


@dataclass(frozen=True)
class PromptSpec:
    style: PromptStyle = "paper"
    separator: str = " </s>"  # between the context and the prompt (eq. 3); a masked encoder uses its [SEP]
    context: int | None = None  # previous utterances kept; None = the whole dialogue prefix

    def segment(self, speaker: str, text: str, first: bool) -> str:
        return ("" if first else " ") + f"{speaker}: {text}"

    def prompt(self, speaker: str, text: str, *, mask: str = "") -> str:
        body = f" For {speaker}: {text} Now {speaker} feels" if self.style == "paper" else f" Now {speaker} feels"
        return self.separator + body + (f" {mask}" if mask else "")

    def strings(self, speakers: Sequence[str], texts: Sequence[str], *, mask: str = "") -> list[str]:
        """The whole input of each utterance as one string (how a masked encoder reads it)."""
        out = []
        for k in range(len(texts)):
            lo = 0 if self.context is None else max(0, k - self.context)
            ctx = "".join(self.segment(speakers[j], texts[j], j == lo) for j in range(lo, k + 1))
            out.append(ctx + self.prompt(speakers[k], texts[k], mask=mask))
        return out
