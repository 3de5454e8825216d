"""Conversation data for emotion recognition in conversation (MAGTKD, seed 004).

    load_erc(path, source="auto", classes=..., label_order=...)  -> ERCData
    ERCData (splits of Conversation, ordered classes), CLASS_ORDERS, repair_text

Formats: `deepmlf.data.erc.formats` (official MELD CSVs, COSMIC / DialogueRNN-MMGCN-SDT pickles,
MERBench label.npz + transcription CSV, MAGTKD's first-stage dict).
"""

from .core import CLASS_ORDERS, SPLITS, Conversation, ERCData, class_order, label_index, repair_text
from .formats import SOURCES, detect_source, load_conversation_csv, load_cosmic_pkl, load_dialoguernn_pkl, load_erc, load_magtkd_pkl, load_merbench

__all__ = ["CLASS_ORDERS", "SOURCES", "SPLITS", "Conversation", "ERCData", "class_order", "detect_source",
           "label_index", "load_conversation_csv", "load_cosmic_pkl", "load_dialoguernn_pkl", "load_erc",
           "load_magtkd_pkl", "load_merbench", "repair_text"]
