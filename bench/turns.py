"""End-of-turn detection: silence alone against Smart Turn v3.2, on the same speech in one run. Prints JSON
and writes bench/results/turns.json.

    nice .venv/bin/python bench/turns.py [--sentences 8] [--questions 10] [--voices all] [--seed 0]
        [--persona default]

Speech is made here by Kokoro (every voice): each sentence spoken whole ("complete"), and the same audio
with a 400-800 ms pause inserted at a word boundary in its middle where the words so far are not a whole
sentence ("paused": "I'd like to book ... an appointment for Tuesday morning"). Where a text holds a whole
sentence (``SENTENCE_ENDS_INSIDE``: "My daughter needs a new library card ... before the summer
holidays"), it is also paused there ("paused_after_sentence"): a place where a listener may answer, so
answering there is counted apart, not as a false cut-off. The boundary comes from Kokoro's phoneme
timeline, and the pause is cut into the full sentence's audio, never synthesized from a half sentence
(truncated text is spoken with a falling, final intonation). Each stream (0.5 s of quiet,
the speech, then quiet) is fed in 32 ms windows through Silero VAD (:class:`agent.vad.StreamingVAD`) and
the :class:`agent.turn.TurnDetector` as a session feeds them. After ``min_wait_ms`` of silence:

* silence: the turn ends ``end_of_turn_silence_ms`` after the speech unless the user speaks first;
* smart_turn: the model is asked (its real wall time on this machine counts: the turn cannot end before
  the answer is there) and its probability sets the silence that ends the turn;
* smart_turn_words: the same, and the words so far are checked as a Session checks them
  (:mod:`agent.turn_text`): the Session's recognition work is replayed on a simulated clock
  (bench/turn_replay.py: Whisper tiny.en on every silence from its first window, interim transcripts when
  the persona has them, the text model reading the words ahead and judging each pause, each job taking
  its real wall time on one of two simulated worker threads), SmolLM2 gives the probability that the
  words end a sentence, with the persona's greeting as the avatar's last reply, and Session's rule
  (:func:`agent.turn.pause_ends_turn`) decides: a veto holds the turn ``veto_wait_ms``, words that
  surely end a sentence end it when judged, otherwise the audio decides but not before the verdict.

Reported for each: end-of-turn delay on complete utterances (decision - end of speech, where the speech
ends at the last 10 ms frame within 40 dB of the loudest), p50/p95; false cut-offs on paused ones (the
turn declared over before the user resumed), cut-offs inside complete ones, and pauses after a whole
sentence that were answered (``answered_after_a_sentence``); where a complete turn's time goes
(``complete_turn_breakdown_ms``: the VAD's lag, Smart Turn's answer, and the verdict's stages); plus the
model's probabilities, its inference time, and the same decisions for other ``max_wait_ms`` and
``text_veto_below`` values (recomputed from the recorded probabilities: the models are not run again).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).parent))

from latency import QUESTIONS as LATENCY_QUESTIONS
from latency import percentile, speech_end
from turn_replay import Replay, Speculation

from agent.persona import Persona, TurnTakingConfig, load_persona
from agent.stt import WhisperSTT
from agent.turn import SAMPLE_RATE, SmartTurnModel, TurnDecision, pause_ends_turn, silence_for
from agent.turn_text import TextTurnModel, vetoes
from avatar_core.config import KOKORO_VOICES, AppSettings
from avatar_core.text.frontend import phonemes
from avatar_core.tts.kokoro import KokoroTTS
from integrations.lifecycle import prepare_process

F32 = npt.NDArray[np.float32]

SENTENCES = [
    "I'd like to book an appointment for Tuesday morning.",
    "Could you tell me where the children's books are kept?",
    "My daughter needs a new library card before the summer holidays.",
    "I was hoping to speak with someone about renewing my prescription.",
    "We are looking for a quiet room where we can study together this afternoon.",
    "Can you check whether the book I reserved last week has arrived?",
    "I think I left my umbrella somewhere near the front desk yesterday.",
    "Please remind me what time the doctor can see me on Friday.",
    "Is there somewhere I can charge my phone while I wait?",
    "I need to change the address on my account because we moved.",
]
# Short questions, as people ask a kiosk: every other one of bench/latency.py's (its questions are short,
# where the sentences above are long; the words' check judges the two differently).
QUESTIONS = LATENCY_QUESTIONS[::2]
# Where a listener may take the turn inside these texts: the words before each of these places are a whole
# sentence or question on their own ("My daughter needs a new library card | before the summer holidays").
# A pause there is a place to answer (a transition-relevance place, in conversation analysis), not a pause
# inside a turn: no listener could know the speaker meant to go on. So the paused set pauses elsewhere,
# and streams paused at these places are a set of their own ("paused_after_sentence"), reported beside it.
SENTENCE_ENDS_INSIDE: dict[str, tuple[str, ...]] = {
    SENTENCES[0]: ("I'd like to book an appointment", "I'd like to book an appointment for Tuesday"),
    SENTENCES[2]: ("My daughter needs a new library card",),
    SENTENCES[3]: ("I was hoping to speak with someone",),
    SENTENCES[4]: (
        "We are looking for a quiet room",
        "We are looking for a quiet room where we can study",
        "We are looking for a quiet room where we can study together",
    ),
    SENTENCES[6]: (
        "I think I left my umbrella",
        "I think I left my umbrella somewhere",
        "I think I left my umbrella somewhere near the front desk",
    ),
    SENTENCES[7]: ("Please remind me", "Please remind me what time the doctor can see me"),
    SENTENCES[8]: ("Is there somewhere I can charge my phone",),
    SENTENCES[9]: ("I need to change the address", "I need to change the address on my account"),
    QUESTIONS[2]: ("Do you have any study rooms", "Do you have any study rooms free"),
    QUESTIONS[4]: ("Are you open",),
    QUESTIONS[6]: ("Can I return books", "Can I return books after closing"),
}
LEAD_S = 0.5  # quiet before the speech
NOISE = 1e-4  # a quiet microphone's noise floor (about -80 dBFS), so the input is never digital zero
FADE_S = 0.005  # fades at a cut, so it does not click
PAUSE_S = (0.4, 0.8)
SWEEP_MAX_WAIT_MS = (800, 1000, 1500, 2000, 3000)
SWEEP_VETO_BELOW = (0.02, 0.05, 0.1, 0.2)
SWEEP_TRUST_ABOVE = (0.8, 0.9, 0.95, 0.98, 1.0)
SWEEP_COMPLETE_ABOVE = (0.3, 0.4, 0.5, 0.7, 1.0)
SWEEP_VETO_WAIT_MS = (1000, 1500, 2000, 3000)
RESULTS = Path(__file__).parent / "results" / "turns.json"


@dataclass(frozen=True)
class Stream:
    """One test input: audio (S,) at 16 kHz and where its speech truly is."""

    name: str
    audio: F32
    speech_end_s: float  # end of the last word
    resume_s: float | None  # paused ones: when the speech comes back after the inserted pause
    pause_s: float
    after_sentence: bool = False  # paused where the words so far are a whole sentence (a place to answer)


@dataclass(frozen=True)
class Pause:
    """A silence the VAD confirmed after ``min_wait_ms``, and what each policy makes of it."""

    end_t: float  # the end of the last speech window (the VAD's speech end)
    heard_t: float  # when the VAD confirmed it (the model is asked then)
    probability: float
    inference_s: float
    resume_t: float  # the first speech window after it (inf: none)
    words: str = ""  # the turn's words up to the pause (Whisper tiny.en)
    text_probability: float = 1.0  # that they end a sentence (agent.turn_text)
    words_at: float | None = None  # when that verdict came on the simulated clock (None: never)
    # Where its time went (s): from the VAD's speech end to the start of recognition, waiting for the
    # recogniser, recognition, waiting for the text model, the text model.
    stages: tuple[float, float, float, float, float] | None = None


def sentence_end_spaces(text: str) -> set[int]:
    """The word boundaries of ``text`` after which its words are a whole sentence (SENTENCE_ENDS_INSIDE),
    numbered 1, 2, ... as the spaces of its IPA (Kokoro's phonemes join some words: "for a")."""
    out = set()
    for prefix in SENTENCE_ENDS_INSIDE.get(text, ()):
        if not text.startswith(prefix + " "):
            raise ValueError(f"{prefix!r} does not begin {text!r}")
        out.add(phonemes(prefix).strip().count(" ") + 1)
    return out


def middle_of(boundaries: list[float], first: float, last: float) -> list[float]:
    """The boundaries in the middle 30-70% of the speech, or (a short question may have none there) the
    one nearest its middle."""
    inside = [m for m in boundaries if 0.3 <= (m - first) / (last - first) <= 0.7]
    return inside or [min(boundaries, key=lambda m: abs((m - first) / (last - first) - 0.5))]


def with_pause(speech: F32, cut: int, pause_s: float) -> F32:
    """``speech`` (S,) with ``pause_s`` of silence cut in at sample ``cut`` (faded, so it does not click)."""
    fade = np.linspace(1.0, 0.0, int(FADE_S * SAMPLE_RATE), dtype=np.float32)
    before, after = speech[:cut].copy(), speech[cut:].copy()
    before[-fade.size :] *= fade
    after[: fade.size] *= fade[::-1]
    return np.concatenate([before, np.zeros(int(pause_s * SAMPLE_RATE), np.float32), after])


def make_streams(
    tts: KokoroTTS, texts: dict[str, str], voices: list[str], tail_s: float, seed: int
) -> list[Stream]:
    """For every text (by its key) and voice, named voice/key/kind: the complete utterance, the same
    paused inside a sentence, and (texts with a whole sentence inside them) paused after it."""
    rng = np.random.default_rng(seed)
    streams: list[Stream] = []
    sentence_ends = {index: sentence_end_spaces(text) for index, text in texts.items()}  # same in every voice
    for voice in voices:
        for index, text in texts.items():
            timed = tts.synthesize_timed(text, voice).trim_lead()
            speech = resample_poly(timed.audio, 2, 3).astype(np.float32)  # (S,) 24 -> 16 kHz
            end = speech_end(speech)
            # Word boundaries: the middles of the spaces of the IPA timeline, in order.
            spoken = [p for p in timed.phones if p.symbol]
            first, last = spoken[0].start, spoken[-1].end
            boundaries = [(p.start + p.end) / 2 for p in spoken if p.symbol == " "]
            inside = [m for i, m in enumerate(boundaries, 1) if i not in sentence_ends[index]]
            after = [m for i, m in enumerate(boundaries, 1) if i in sentence_ends[index]]
            kinds: list[tuple[str, F32, float | None, float]] = [("complete", speech, None, 0.0)]
            for kind, candidates in (("paused", inside), ("paused_after_sentence", after)):
                if candidates:
                    cut = round(float(rng.choice(middle_of(candidates, first, last))) * SAMPLE_RATE)
                    pause = float(rng.uniform(*PAUSE_S))
                    resume_s = LEAD_S + cut / SAMPLE_RATE + pause
                    kinds.append((kind, with_pause(speech, cut, pause), resume_s, pause))
            for kind, audio, resume, extra in kinds:
                lead = np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32)
                tail = np.zeros(int(tail_s * SAMPLE_RATE), np.float32)
                full = np.concatenate([lead, audio, tail])
                full += rng.normal(0.0, NOISE, full.size).astype(np.float32)
                streams.append(
                    Stream(
                        f"{voice}/{index}/{kind}",
                        full,
                        LEAD_S + end + extra,
                        resume,
                        extra,
                        after_sentence=kind == "paused_after_sentence",
                    )
                )
    return streams


def declared(pauses: list[Pause], deadline: Callable[[Pause], float]) -> float | None:
    """When the turn is first declared over (None: never): at the first pause whose deadline comes before
    the user speaks again."""
    for pause in pauses:
        if (when := deadline(pause)) < pause.resume_t:
            return when
    return None


def evaluate(
    streams: list[Stream], pauses: list[list[Pause]], deadline: Callable[[Pause], float]
) -> dict[str, object]:
    """End-of-turn delay on complete streams, false cut-offs on paused ones, and how often a pause after a
    whole sentence was answered, for one policy."""
    delays: list[float] = []
    early = never = cutoffs = paused = answered = after = 0
    for stream, found in zip(streams, pauses, strict=True):
        when = declared(found, deadline)
        if stream.after_sentence:
            assert stream.resume_s is not None
            after += 1
            answered += when is not None and when < stream.resume_s
        elif stream.resume_s is not None:
            paused += 1
            cutoffs += when is not None and when < stream.resume_s
        elif when is None:
            never += 1
        elif when < stream.speech_end_s:
            early += 1
        else:
            delays.append(1000 * (when - stream.speech_end_s))
    complete = len(streams) - paused - after
    return {
        "end_of_turn_ms": {"p50": percentile(delays, 50), "p95": percentile(delays, 95), "n": len(delays)},
        "false_cutoff_rate": round(cutoffs / paused, 3) if paused else None,
        "false_cutoffs": f"{cutoffs}/{paused}",
        "cut_inside_complete": f"{early}/{complete}",
        "never_ended": never,
        "answered_after_a_sentence": f"{answered}/{after}",
    }


def cut_words(
    streams: list[Stream], pauses: list[list[Pause]], deadline: Callable[[Pause], float]
) -> list[dict[str, object]]:
    """The words heard at each false cut-off of a policy: the pause that ended a paused utterance early."""
    out: list[dict[str, object]] = []
    for stream, found in zip(streams, pauses, strict=True):
        if stream.resume_s is None or stream.after_sentence:
            continue
        cut = next((p for p in found if deadline(p) < p.resume_t), None)
        if cut is not None and deadline(cut) < stream.resume_s:
            out.append({"stream": stream.name, "words": cut.words, "p": round(cut.text_probability, 3)})
    return out


def smart_deadline(
    config: TurnTakingConfig, max_wait_ms: int | None = None, *, model_time: bool = True
) -> Callable[[Pause], float]:
    """The turn detector's rule. With ``model_time`` the model's real time counts (the turn cannot end
    before its answer); without it, as if the answer came at once (what a fast, idle CPU approaches)."""
    low, high = config.min_wait_ms / 1000, (max_wait_ms or config.max_wait_ms) / 1000
    return lambda p: max(
        p.end_t + silence_for(p.probability, low, high), p.heard_t + (p.inference_s if model_time else 0.0)
    )


STEP_S = 0.005  # the simulated clock of a pause (a session checks at every audio frame, 10-20 ms)


def words_deadline(config: TurnTakingConfig) -> Callable[[Pause], float]:
    """Session's rule with the words' check (:func:`agent.turn.pause_ends_turn`), run on a clock from the
    moment the VAD confirms the pause: Smart Turn's answer counts from when it came (``heard_t`` plus its
    wall time), the words' verdict from when the replayed work gave it (``words_at``)."""

    def deadline(p: Pause) -> float:
        low, high = config.min_wait_ms / 1000, config.max_wait_ms / 1000
        decision = TurnDecision(silence_for(p.probability, low, high), p.probability, p.inference_s)
        audio_at = p.heard_t + p.inference_s
        t = p.heard_t
        while True:  # ends by veto_wait_ms at the latest
            judged = p.words_at is not None and t >= p.words_at
            words = (p.words, p.text_probability) if judged else None
            audio = decision if t >= audio_at else None
            pending = p.words_at is not None and not judged
            if pause_ends_turn(config, t - p.end_t, audio, words, words_pending=pending):
                return t
            t += STEP_S

    return deadline


def breakdown(streams: list[Stream], pauses: list[list[Pause]]) -> dict[str, object]:
    """Where the end of a complete turn's time goes, from its last audible sound (ms, p50 / p95): when the VAD
    heard the speech end, and, after that, when Smart Turn's answer and the words' verdict came."""
    lag, audio, words = [], [], []
    parts: list[tuple[float, ...]] = []
    for stream, found in zip(streams, pauses, strict=True):
        if stream.resume_s is None and found:
            last = found[-1]
            lag.append(1000 * (last.end_t - stream.speech_end_s))
            audio.append(1000 * (last.heard_t + last.inference_s - last.end_t))
            if last.words_at is not None:
                words.append(1000 * (last.words_at - last.end_t))
            if last.stages is not None:
                parts.append(tuple(1000 * s for s in last.stages))
    named = [
        ("vad_speech_end_after_last_sound", lag),
        ("smart_turn_answer_after_vad_end", audio),
        ("words_verdict_after_vad_end", words),
    ]
    stage_names = ("starts", "waits_for_recogniser", "recognition", "waits_for_text_model", "text_model")
    named += [(f"verdict_{name}", [p[i] for p in parts]) for i, name in enumerate(stage_names)]
    return {
        name: {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}
        for name, values in named
    }


def swept(config: TurnTakingConfig, **update: float) -> TurnTakingConfig:
    """The settings with one value changed (not validated: a sweep may cross another setting)."""
    return config.model_copy(update=update)


def stages(end_t: float, spec: Speculation) -> tuple[float, float, float, float, float] | None:
    """:attr:`Pause.stages` of a judged speculation."""
    heard, judged = spec.job, spec.judging
    if heard is None or judged is None:
        return None
    if heard.started is None or heard.ended is None or judged.started is None or judged.ended is None:
        return None
    return (
        heard.submitted - end_t,
        heard.started - heard.submitted,
        heard.ended - heard.started,
        judged.started - judged.submitted,
        judged.ended - judged.started,
    )


def replayed(stream: Stream, replay: Replay) -> list[Pause]:
    """The pauses the VAD confirms in ``stream``, each with Smart Turn's answer and its words' verdict."""
    out = []
    for p in replay.run(stream.audio):
        pause = Pause(p.end_t, p.heard_t, p.probability, p.inference_s, p.resume_t)
        spec = p.speculation
        if spec is not None and spec.judged_at is not None and spec.probability is not None:
            pause = replace(
                pause,
                words=spec.text or "",
                text_probability=spec.probability,
                words_at=spec.judged_at,
                stages=stages(p.end_t, spec),
            )
        elif spec is not None:
            pause = replace(pause, words=spec.text or "")
        out.append(pause)
    return out


def by_set(
    streams: list[Stream], pauses: list[list[Pause]], deadline: Callable[[Pause], float]
) -> dict[str, object]:
    """:func:`evaluate` on the long sentences and on the short questions apart."""
    out: dict[str, object] = {}
    for kind, prefix in (("sentences", "s"), ("questions", "q")):
        chosen = [i for i, stream in enumerate(streams) if stream.name.split("/")[1].startswith(prefix)]
        if chosen:
            out[kind] = evaluate([streams[i] for i in chosen], [pauses[i] for i in chosen], deadline)
    return out


def with_sets(
    streams: list[Stream], pauses: list[list[Pause]], deadline: Callable[[Pause], float]
) -> dict[str, object]:
    """:func:`evaluate` on every stream, and :func:`by_set`."""
    return evaluate(streams, pauses, deadline) | {"by_set": by_set(streams, pauses, deadline)}


def run(sentences: int, questions: int, voices: list[str], seed: int, persona: Persona) -> dict[str, object]:
    started = time.monotonic()
    tts = KokoroTTS(AppSettings().cache_dir, threads=1)
    model = SmartTurnModel()
    stt, text = WhisperSTT(), TextTurnModel()
    tail_s = max(SWEEP_MAX_WAIT_MS) / 1000 + 0.5
    texts = {f"s{i}": text for i, text in enumerate(SENTENCES[:sentences])}
    texts |= {f"q{i}": text for i, text in enumerate(QUESTIONS[:questions])}
    streams = make_streams(tts, texts, voices, tail_s, seed)
    config = persona.turn_taking
    replay = Replay(
        config,
        model,
        stt,
        text,
        persona.llm.greeting,
        partials=persona.stt.interim,
        barge_in_s=config.barge_in_min_speech_ms / 1000,
    )
    pauses = [replayed(stream, replay) for stream in streams]
    replay.close()
    silence_s = config.end_of_turn_silence_ms / 1000
    silence_only = evaluate(streams, pauses, lambda p: p.end_t + silence_s)
    smart = evaluate(streams, pauses, smart_deadline(config))
    words = evaluate(streams, pauses, words_deadline(config))
    inference = [1000 * p.inference_s for found in pauses for p in found]
    verdict_ms = [1000 * (p.words_at - p.end_t) for found in pauses for p in found if p.words_at is not None]
    # The model's answer at the end of each complete one, and in each inserted pause (the last pause the
    # VAD confirmed before the speech came back).
    at_end: dict[str, list[float]] = {}
    in_pause: dict[str, list[float]] = {}
    for stream, found in zip(streams, pauses, strict=True):
        voice = stream.name.split("/")[0]
        if stream.resume_s is None and found:
            at_end.setdefault(voice, []).append(found[-1].probability)
        elif stream.after_sentence:
            continue
        elif before := [p for p in found if p.end_t < (stream.resume_s or 0.0)]:
            in_pause.setdefault(voice, []).append(before[-1].probability)

    def spread(values: list[float]) -> dict[str, object]:
        return {
            "n": len(values),
            "p10": percentile(values, 10),
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "over_0.5": sum(v > 0.5 for v in values),
        }

    return {
        "bench": "turns",
        "command": "nice .venv/bin/python bench/turns.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "speech": f"Kokoro, voices {', '.join(voices)}; {sentences} sentences and {questions} short "
        "questions each, complete and with a "
        f"{int(1000 * PAUSE_S[0])}-{int(1000 * PAUSE_S[1])} ms pause at a word boundary in the middle",
        "utterances": {
            kind: sum(stream.name.endswith(f"/{kind}") for stream in streams)
            for kind in ("complete", "paused", "paused_after_sentence")
        },
        "settings": config.model_dump(
            include={
                "turn_detector",
                "vad_threshold",
                "min_speech_ms",
                "end_of_turn_silence_ms",
                "min_wait_ms",
                "max_wait_ms",
                "text_veto_below",
                "text_complete_above",
                "veto_wait_ms",
                "trust_smart_turn_above",
            }
        ),
        "silence": silence_only,
        "smart_turn": smart,
        "smart_turn_words": words,
        "by_set": {
            "silence": by_set(streams, pauses, lambda p: p.end_t + silence_s),
            "smart_turn": by_set(streams, pauses, smart_deadline(config)),
            "smart_turn_words": by_set(streams, pauses, words_deadline(config)),
        },
        "complete_turn_breakdown_ms": breakdown(streams, pauses),
        "words_verdict_after_vad_end_ms": {
            "p50": percentile(verdict_ms, 50),
            "p95": percentile(verdict_ms, 95),
            "n": len(verdict_ms),
        },
        "replayed_work": {
            "recognitions": replay.recogniser.jobs,
            "recognition_s": round(replay.recogniser.busy_s, 1),
            "text_model_calls": replay.judge.jobs,
            "text_model_s": round(replay.judge.busy_s, 1),
            "interim_transcripts": persona.stt.interim,
        },
        "smart_turn_inference_ms": {
            "p50": percentile(inference, 50),
            "p95": percentile(inference, 95),
            "max": percentile(inference, 100),
            "n": len(inference),
        },
        "smart_turn_model_time_excluded": evaluate(streams, pauses, smart_deadline(config, model_time=False)),
        "probability_complete": {
            "at_end_of_complete": spread([v for values in at_end.values() for v in values]),
            "in_inserted_pause": spread([v for values in in_pause.values() for v in values]),
            "median_by_voice": {
                voice: {"complete": percentile(at_end.get(voice, []), 50), "paused": percentile(values, 50)}
                for voice, values in in_pause.items()
            },
        },
        "smart_turn_by_max_wait_ms": {
            str(ms): evaluate(streams, pauses, smart_deadline(config, ms)) for ms in SWEEP_MAX_WAIT_MS
        },
        "smart_turn_words_by_veto_below": {
            str(b): evaluate(streams, pauses, words_deadline(swept(config, text_veto_below=b)))
            for b in SWEEP_VETO_BELOW
        },
        "smart_turn_words_by_complete_above": {
            str(c): with_sets(streams, pauses, words_deadline(swept(config, text_complete_above=c)))
            for c in SWEEP_COMPLETE_ABOVE
        },
        "smart_turn_words_by_trust_above": {
            str(t): with_sets(streams, pauses, words_deadline(swept(config, trust_smart_turn_above=t)))
            for t in SWEEP_TRUST_ABOVE
        },
        "smart_turn_words_by_max_wait_ms": {
            str(ms): evaluate(
                streams,
                pauses,
                words_deadline(swept(config, max_wait_ms=ms, veto_wait_ms=max(ms, config.veto_wait_ms))),
            )
            for ms in SWEEP_MAX_WAIT_MS
        },
        "smart_turn_words_by_veto_wait_ms": {
            str(ms): evaluate(
                streams,
                pauses,
                words_deadline(swept(config, veto_wait_ms=max(ms, config.max_wait_ms))),
            )
            for ms in SWEEP_VETO_WAIT_MS
        },
        "words_at_false_cutoffs": cut_words(streams, pauses, words_deadline(config)),
        "words_at_vetoed_ends": [
            {"stream": stream.name, "words": found[-1].words, "p": round(found[-1].text_probability, 3)}
            for stream, found in zip(streams, pauses, strict=True)
            if stream.resume_s is None
            and found
            and vetoes(found[-1].words, found[-1].text_probability, config.text_veto_below)
        ],
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    prepare_process()  # as `dyad` does: the product's threads, measured
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sentences", type=int, default=8, help=f"per voice, at most {len(SENTENCES)}")
    parser.add_argument(
        "--questions", type=int, default=10, help=f"short questions per voice, at most {len(QUESTIONS)}"
    )
    parser.add_argument(
        "--voices", default="all", help=f"comma-separated, or 'all': {', '.join(KOKORO_VOICES)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="chooses the word boundaries and pause lengths")
    parser.add_argument("--persona", default="default", help="whose turn_taking settings to use")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    args = parser.parse_args()
    voices = list(KOKORO_VOICES) if args.voices == "all" else args.voices.split(",")
    unknown = sorted(set(voices) - set(KOKORO_VOICES))
    if unknown or not 1 <= args.sentences <= len(SENTENCES) or not 0 <= args.questions <= len(QUESTIONS):
        parser.error(
            f"voices must be among {KOKORO_VOICES} (got {unknown}); --sentences 1..{len(SENTENCES)}; "
            f"--questions 0..{len(QUESTIONS)}"
        )
    persona = load_persona(args.persona)
    result = run(args.sentences, args.questions, voices, args.seed, persona)
    text = json.dumps(result, indent=2)
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
