"""Every detector kind by name (model files, the CLI, the dev sets): the one table, built from the
detector modules, which never import it (fused builds its parts from its own part_kinds)."""
from __future__ import annotations

from kernelpilot.errors import KpError
from kernelpilot.security import detectors as D
from kernelpilot.security import fused as F
from kernelpilot.security import sequence as S
from kernelpilot.security.features import Vocabulary

DETECTORS = {c.kind: c for c in (D.Stide, D.Freq, D.Tree, D.CNN, D.Ensemble, S.Mismatch, S.LFC, S.Hamming, S.LM, S.Novelty,
                                 F.Rarity, F.Fused)}


def make(kind: str, vocab: Vocabulary, **kw) -> D.Detector:
    if kind not in DETECTORS:
        raise KpError(f"unknown detector '{kind}'; choose from {', '.join(DETECTORS)}")
    return DETECTORS[kind](vocab, **kw)
