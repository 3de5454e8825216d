"""Dialogue batches: conversations padded to the longest one (B dialogues, K utterances).

The loop and `collect_predictions` score *utterances*: `ids` and `labels` run over the real
(unpadded) utterances, dialogue by dialogue, in the order `mask` is True in row-major order — the
order of every model's flattened `.prediction` (docs/contracts.md, "Batches").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ...errors import DataError
from .core import Conversation, ERCData


@dataclass
class DialogueBatch:
    features: dict[str, Tensor]  # modality -> (B, K, d) float32, zeros at padding
    mask: Tensor  # (B, K) bool, True at real utterances
    speakers: Tensor  # (B, K) long; padding = n_speakers (its own row of the speaker table)
    positions: Tensor  # (B, K) long utterance index in its dialogue
    padded_labels: Tensor | None  # (B, K) long, -100 at padding; None when unlabelled
    ids: list[str] = field(default_factory=list)  # "<split>/<utterance_id>" per real utterance

    @property
    def labels(self) -> Tensor | None:
        """(N,) labels of the real utterances (flattened like `.prediction`)."""
        return None if self.padded_labels is None else self.padded_labels[self.mask]

    def __len__(self) -> int:
        return int(self.mask.sum())

    def to(self, device: torch.device | str) -> "DialogueBatch":
        return DialogueBatch(
            features={k: v.to(device) for k, v in self.features.items()}, mask=self.mask.to(device),
            speakers=self.speakers.to(device), positions=self.positions.to(device),
            padded_labels=None if self.padded_labels is None else self.padded_labels.to(device), ids=self.ids)


class ConversationDataset(Dataset):
    """One split of `ERCData` with the speaker ids resolved (global vocabulary or per dialogue)."""

    def __init__(self, data: ERCData, split: str, modalities: list[str], *, vocab: dict[str, int] | None = None,
                 n_speakers: int | None = None) -> None:
        self.split, self.modalities = split, list(modalities)
        self.convs: list[Conversation] = data[split]
        for c in self.convs:
            missing = [m for m in self.modalities if m not in c.features]
            if missing:
                raise DataError(f"{data.path}: split {split!r}, dialogue {c.dialogue_id} has no {', '.join(missing)} "
                                f"features (give data.features.{missing[0]}=FILE or run `deepmlf erc extract`)")
        self.speaker_ids = [data.speaker_ids(c, vocab) for c in self.convs]
        self.n_speakers = n_speakers if n_speakers is not None else data.n_speakers()
        self.has_labels = all(c.labels is not None for c in self.convs)

    def __len__(self) -> int:
        return len(self.convs)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, idx: list[int]) -> DialogueBatch:
        convs = [self.convs[i] for i in idx]
        B, K = len(convs), max(len(c) for c in convs)
        mask = torch.zeros(B, K, dtype=torch.bool)
        spk = torch.full((B, K), self.n_speakers, dtype=torch.long)
        pos = torch.zeros(B, K, dtype=torch.long)
        labels = torch.full((B, K), -100, dtype=torch.long) if self.has_labels else None
        feats = {m: torch.zeros(B, K, convs[0].features[m].shape[1]) for m in self.modalities}
        ids = []
        for b, (i, c) in enumerate(zip(idx, convs)):
            k = len(c)
            mask[b, :k] = True
            ids += [f"{self.split}/{u}" for u in c.utterance_ids]
            spk[b, :k] = torch.tensor(np.minimum(self.speaker_ids[i], self.n_speakers - 1))
            pos[b, :k] = torch.arange(k)
            if labels is not None:
                labels[b, :k] = torch.tensor(c.labels)
            for m in self.modalities:
                feats[m][b, :k] = torch.from_numpy(np.asarray(c.features[m], dtype=np.float32))
        return DialogueBatch(features=feats, mask=mask, speakers=spk, positions=pos, padded_labels=labels, ids=ids)


def dialogue_loader(dataset: ConversationDataset, *, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=dataset.collate,
                        generator=gen if shuffle else None)
    return loader
