"""Data: MMSA pickles -> validated `Split`s -> `Batch`es (DESIGN.md §3)."""

from .batch import Batch
from .dataset import MSACollate, MSADataset, make_collate, make_loader
from .mmsa import (
    DATASETS,
    LABEL_RANGES,
    SPLITS,
    STANDARD_DIMS,
    MMSAData,
    Split,
    load_mmsa,
    mmsa_from_dict,
)

__all__ = [
    "Batch",
    "DATASETS",
    "LABEL_RANGES",
    "SPLITS",
    "STANDARD_DIMS",
    "MMSAData",
    "MSACollate",
    "MSADataset",
    "Split",
    "load_mmsa",
    "make_collate",
    "make_loader",
    "mmsa_from_dict",
]
