"""Whisper's own confidence (which transcribed segments to trust: the live STT and the video converter),
and decoding one short utterance on an encoder window shorter than Whisper's 30 s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

# Whisper invents words for silence and noise ("Thank you.", "you"); its own confidence drops them.
NO_SPEECH_PROB_MAX = 0.6
AVG_LOGPROB_MIN = -1.0
COMPRESSION_RATIO_MAX = 2.4  # higher means looping, repeated text: a hallucination


Heard = Literal["words", "unclear", "nothing"]


def heard(segment: Any) -> Heard:
    """What Whisper's own confidence says a faster-whisper segment (or :class:`WindowTranscript`) is:
    ``"nothing"`` when it is probably invented (silence, noise: ``no_speech_prob`` high, or a loop),
    ``"unclear"`` when Whisper took it for speech but doubts the words (``avg_logprob`` low: mumbled, an
    accent it does not know), else ``"words"``."""
    if segment.no_speech_prob > NO_SPEECH_PROB_MAX or segment.compression_ratio > COMPRESSION_RATIO_MAX:
        return "nothing"
    return "unclear" if segment.avg_logprob < AVG_LOGPROB_MIN else "words"


def doubtful(segment: Any) -> bool:
    """True when a faster-whisper segment's words are not to be trusted (:func:`heard` is not "words")."""
    return heard(segment) != "words"


# Whisper's encoder reads 30 s windows: faster-whisper pads every call to 30 s, so a 2 s question costs
# as much as 30 s of audio. CTranslate2 accepts a shorter window (the positional embeddings are sliced).
# On the latency benchmark's questions (two Kokoro voices, 70 utterances of 1-11 s, 696 words) a 15 s
# window made 36 word errors where 30 s made 37, in a third of the time (a 2-3 s question: 140 ms against
# 440); 12 s made 38 in 109 ms; 10 s made 46 and 8 s 49 (it repeats or drops words), and a window that ends
# right after the speech makes Whisper loop (bench/stt_window.py; bench/results/stt_window.json,
# 2026-12-05). 12 s it is: the end of the turn waits for this pass, and 30 ms of it is worth two words in 700.
MIN_WINDOW_S = 12.0
WINDOW_MARGIN_S = 1.0  # silence kept after the speech inside the window
FULL_WINDOW_S = 30.0
_HOP = 160  # samples per log-mel frame at 16 kHz


@dataclass(frozen=True)
class WindowTranscript:
    """Whisper's text for one short window and its own confidence, as :func:`doubtful` reads it."""

    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    # Whisper's probability of its last word (the product over the word's tokens; punctuation is not a
    # word): often low when it completed a phrase the audio cut off ("what time does the ..." heard as
    # "what time does this mean?"); 1.0 without words.
    last_word_probability: float = 1.0


def last_word_probability(tokenizer: Any, tokens: list[int], logits: Sequence[Any]) -> float:
    """The probability greedy decoding gave the last word of ``tokens`` (the product over its tokens):
    ``logits`` holds the (vocab,) row of each decoding step (CTranslate2's ``return_logits_vocab``)."""
    words, word_tokens = tokenizer.split_to_word_tokens(tokens)
    end = len(tokens)
    for word, pieces in zip(reversed(words), reversed(word_tokens), strict=True):
        start = end - len(pieces)
        if any(c.isalnum() for c in word):
            break
        end = start  # punctuation after the word
    else:
        return 1.0
    probability = 1.0
    for step in range(start, end):
        row = np.asarray(logits[step], dtype=np.float64).reshape(-1)  # (vocab,) logits
        row = np.exp(row - row.max())
        probability *= float(row[tokens[step]] / row.sum())
    return probability


def window_frames(samples: int, min_window_s: float = MIN_WINDOW_S) -> int:
    """Log-mel frames the encoder reads for ``samples`` of 16 kHz audio: the speech plus
    ``WINDOW_MARGIN_S``, at least ``min_window_s`` and at most 30 s."""
    speech = samples // _HOP + 1 + round(100 * WINDOW_MARGIN_S)
    return int(min(round(100 * FULL_WINDOW_S), max(speech, round(100 * min_window_s))))


def fits_window(samples: int) -> bool:
    """Whether ``samples`` of 16 kHz audio and the margin fit in one window shorter than 30 s."""
    return samples / 16_000 + WINDOW_MARGIN_S < FULL_WINDOW_S


def transcribe_window(
    model: Any, samples: F32, *, language: str, beam_size: int = 1, min_window_s: float = MIN_WINDOW_S
) -> WindowTranscript:
    """Greedy (or beam) decoding of ``samples`` (S,) 16 kHz, under 30 s, by a faster-whisper ``model``
    on an encoder window of :func:`window_frames`, without timestamps, temperature 0, no prompt: the
    options the live STT gives ``WhisperModel.transcribe``, which would pad the window to 30 s."""
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

    if not fits_window(samples.size):
        raise ValueError(f"{samples.size / 16_000:.1f} s of audio does not fit one window; use transcribe()")
    features = model.feature_extractor(samples)  # (M, F) log-mel, M = 80 mel bands
    frames = window_frames(samples.size, min_window_s)
    features = np.pad(features[:, :frames], ((0, 0), (0, max(0, frames - features.shape[-1]))))  # (M, frames)
    encoded = model.encode(features)
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
    )
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        max_length=model.max_length,
        return_scores=True,
        return_logits_vocab=True,  # a (vocab,) row per step: the last word's probability
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
    )[0]
    tokens = result.sequences_ids[0]
    text = tokenizer.decode(tokens).strip()
    # faster-whisper's average log-probability (length penalty 1): the score is the sum over len(tokens).
    avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
    return WindowTranscript(
        text,
        float(result.no_speech_prob),
        avg_logprob,
        float(get_compression_ratio(text)),
        last_word_probability(tokenizer, tokens, result.logits[0]),
    )
