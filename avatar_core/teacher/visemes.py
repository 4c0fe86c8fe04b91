"""Visemes: which mouth shape each phoneme asks for, and how strongly it holds against its neighbours.

Phonemes are single symbols of Kokoro's phoneme set: IPA, with diphthongs and affricates as one
symbol (``I`` = aɪ, ``W`` = aʊ, ``A`` = eɪ, ``O`` = oʊ, ``Y`` = ɔɪ, ``Q`` = əʊ, ``ʧ``, ``ʤ``). Each
symbol maps to a viseme class; each class has mouth targets (motion fields) and a dominance (Cohen &
Massaro 1993): high-dominance classes such as bilabials resist coarticulation, schwa and /h/ take their
shape from the neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VisemeClass = Literal[
    "rest", "bilabial", "labiodental", "dental", "alveolar", "sibilant", "postalveolar", "velar",
    "liquid", "rhotic", "glide_w", "glide_j", "open", "mid", "schwa", "spread", "rounded", "round_open",
]  # fmt: skip


@dataclass(frozen=True)
class Viseme:
    """Mouth targets of one class, its dominance strength and how far (s) it reaches its neighbours."""

    targets: dict[str, float]
    dominance: float
    reach_s: float = 0.07
    examples: str = ""


VISEMES: dict[VisemeClass, Viseme] = {
    "rest": Viseme({"jaw_open": 0.02, "lips_pressed": 0.3}, 0.3, 0.10, "silence"),
    "bilabial": Viseme({"jaw_open": 0.06, "lips_pressed": 1.0, "mouth_wide": 0.05}, 3.0, 0.05, "p b m"),
    "labiodental": Viseme({"jaw_open": 0.12, "lower_lip_down": -0.9, "upper_lip_up": 0.2}, 2.5, 0.05, "f v"),
    "dental": Viseme({"jaw_open": 0.18, "mouth_wide": 0.15, "lower_lip_down": 0.15}, 1.4, 0.06, "θ ð"),
    "alveolar": Viseme({"jaw_open": 0.16, "mouth_wide": 0.12}, 0.8, 0.06, "t d n ɾ"),
    "sibilant": Viseme({"jaw_open": 0.07, "mouth_wide": 0.35, "upper_lip_up": 0.15}, 1.2, 0.06, "s z"),
    "postalveolar": Viseme(
        {"jaw_open": 0.12, "mouth_round": 0.55, "upper_lip_up": 0.25, "lower_lip_down": 0.15},
        1.6,
        0.06,
        "ʃ ʒ ʧ ʤ",
    ),
    "velar": Viseme({"jaw_open": 0.25, "mouth_wide": 0.05}, 0.5, 0.06, "k g ŋ"),
    "liquid": Viseme({"jaw_open": 0.25, "mouth_wide": 0.1}, 0.7, 0.06, "l"),
    "rhotic": Viseme({"jaw_open": 0.2, "mouth_round": 0.35}, 1.0, 0.07, "ɹ ɚ ɝ"),
    "glide_w": Viseme({"jaw_open": 0.1, "mouth_round": 0.9}, 1.8, 0.07, "w"),
    "glide_j": Viseme({"jaw_open": 0.15, "mouth_wide": 0.45}, 0.9, 0.06, "j"),
    "open": Viseme({"jaw_open": 0.75, "mouth_wide": 0.2}, 1.0, 0.08, "a ɑ æ ɐ ʌ I(aɪ) W(aʊ)"),
    "mid": Viseme({"jaw_open": 0.45, "mouth_wide": 0.3}, 0.9, 0.08, "ɛ e ɜ A(eɪ)"),
    "schwa": Viseme({"jaw_open": 0.3, "mouth_wide": 0.1}, 0.4, 0.07, "ə ᵻ ɨ"),
    "spread": Viseme({"jaw_open": 0.2, "mouth_wide": 0.65, "upper_lip_up": 0.1}, 1.0, 0.07, "i ɪ"),
    "rounded": Viseme({"jaw_open": 0.22, "mouth_round": 0.9}, 1.3, 0.08, "u ʊ"),
    "round_open": Viseme({"jaw_open": 0.5, "mouth_round": 0.7}, 1.2, 0.08, "o ɔ ɒ O(oʊ) Y(ɔɪ) Q(əʊ)"),
}

_CLASS_OF: dict[str, VisemeClass] = {}
for _name, _symbols in (
    ("bilabial", "pbm"), ("labiodental", "fv"), ("dental", "θð"), ("alveolar", "tdnɾʔ"),
    ("sibilant", "sz"), ("postalveolar", "ʃʒʧʤ"), ("velar", "kgɡŋxh"), ("liquid", "lɫ"),
    ("rhotic", "ɹɚɝr"), ("glide_w", "w"), ("glide_j", "j"), ("open", "aɑæɐʌIW"), ("mid", "ɛeɜA"),
    ("schwa", "əᵻɨᵊ"), ("spread", "iɪy"), ("rounded", "uʊ"), ("round_open", "oɔɒOYQ"),
):  # fmt: skip
    for _symbol in _symbols:
        _CLASS_OF[_symbol] = _name  # type: ignore[assignment]

# Symbols that carry timing but no mouth shape of their own.
STRESS = {"ˈ": 1.0, "ˌ": 0.5}
LENGTH = "ː"
PAUSES = set('.,;:!?—…()"“”') | {" "}
PHRASE_ENDS = set(".!?;:—…")
BILABIALS = frozenset("pbm")


def viseme_class(symbol: str) -> VisemeClass | None:
    """The viseme class of one IPA symbol; None for stress, length marks and spaces (they only carry time),
    'rest' for punctuation pauses and anything unknown."""
    if symbol in STRESS or symbol == LENGTH or symbol == " " or symbol == "":
        return None
    if symbol in PAUSES:
        return "rest"
    return _CLASS_OF.get(symbol, "schwa")
