"""End of turn from the words: does the transcript so far end a sentence?

Smart Turn (agent/turn.py) hears intonation, and intonation misleads it in a pause inside a sentence
("I'd like to book an appointment ... for Tuesday"): on the project's paused set it ended a third of the
turns too early. The words tell those pauses apart: "please remind me what time the doctor can see me on"
cannot end. Like LiveKit's turn detector (a fine-tuned SmolLM2-135M that reads the chat so far), a small
language model reads the user's words and gives the probability that the next token closes the sentence:
``.``, ``?``, ``!`` or the end of the message. Here it is the SmolLM2-135M-Instruct the embedded LLM
server already bundles, run in this process (a separate llama.cpp context, so it never queues behind the
reply the server is writing), on the prompt

    <|im_start|>system\\n{SYSTEM}<|im_end|>\\n[<|im_start|>assistant\\n{last reply}<|im_end|>\\n]
    <|im_start|>user\\n{words, lower case, without punctuation}

The words lose their punctuation because Whisper puts a full stop after nearly anything it hears,
cut-off sentences included. The probability acts both ways (:func:`agent.turn.pause_ends_turn`): a pause
whose words do not end a sentence waits ``turn_taking.veto_wait_ms`` (``text_veto_below``), one whose words
surely do ends as soon as they are judged (``text_complete_above``), and in between the audio decides.
Measured by bench/turns.py (docs/design.md, "End of turn").
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_core.bundled import MissingModelError
from avatar_core.workers import compute_pool

log = logging.getLogger(__name__)

SYSTEM = "You are a helpful assistant at a front desk."
END_PIECES = (".", "?", "!")  # and <|im_end|>: the tokens that close what the user says
CONTEXT_TOKENS = 512  # prompt + last reply + the user's words; longer inputs keep their end
LAST_REPLY_CHARS = 300  # the end of the avatar's last reply is context enough
# Fewer words are never vetoed: a pause after one or two words is seldom inside a sentence, and with so
# little to read the model underrates short complete turns ("hello" 0.03, "thank you" 0.05).
MIN_VETO_WORDS = 3
# A last word Whisper gave less than this probability may be one it invented after a cut phrase: the verdict
# then weighs the words without it (TextTurnModel.probability). Judged offline on bench/turns.py's replayed
# pauses (234 of them, Whisper's word probabilities): complete turns' last words had 0.90 or more in 90%,
# words cut by a pause in 35%. Above it the verdict costs no second look.
DOUBT_BELOW = 0.9
_PUNCTUATION = re.compile(r"[^\w' ]+")


def words_only(text: str) -> str:
    """The transcript as the model reads it: lower case, punctuation dropped, spaces collapsed."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def vetoes(words: str, probability: float, below: float) -> bool:
    """Whether a pause after ``words``, which end a sentence with ``probability``, must wait longer."""
    return probability < below and len(words_only(words).split()) >= MIN_VETO_WORDS


@dataclass(frozen=True)
class TextVerdict:
    """The words' probability of ending a sentence, and the call's wall time."""

    probability: float
    inference_s: float


class TextTurnModel:
    """SmolLM2-135M-Instruct (llama.cpp, one thread) judging whether the words so far end the turn.

    :meth:`probability` is blocking and thread-safe (one call at a time: a llama.cpp context is not
    shared); :meth:`judge` runs it on the model's own worker thread. One model serves every session of a
    process. The system prompt (and the last reply, while it is the same) stays evaluated between calls,
    and :meth:`prime` evaluates a new reply before the user's pause, so a call reads only the user's
    words. :meth:`probability` reads them on ``judge_threads`` (one: on the idle 2-core machine two threads
    take 37 ms p50 against 69, but in a live pause the LLM server is already writing the speculative reply
    and two threads waited on each other for up to 570 ms), :meth:`prime` on ``threads`` (while the avatar
    speaks, beside the renderer).
    """

    def __init__(self, model_path: Path | None = None, threads: int = 1, judge_threads: int = 1) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise MissingModelError(
                "the text end-of-turn check needs llama-cpp-python (the [local] extra): "
                "pip install 'dyad[local]', or set turn_taking.text_veto_below: 0"
            )
        import llama_cpp

        from avatar_core import bundled

        self.path = model_path if model_path is not None else bundled.smollm2_gguf()
        self._llm = llama_cpp.Llama(
            str(self.path),
            n_ctx=CONTEXT_TOKENS,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,  # only the last token's logits: a full scores matrix is n_ctx x 49152 floats
            verbose=False,
        )
        ends = self._llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
        if len(ends) != 1:
            raise MissingModelError(f"{self.path}: not a SmolLM2 chat model (no single <|im_end|> token)")
        pieces = (self._llm.tokenize(p.encode(), add_bos=False)[-1] for p in END_PIECES)
        self._ends = sorted({ends[0], *pieces})
        self._vocab = self._llm.n_vocab()
        self._threads = threads
        self._judge_threads = judge_threads
        self._set_threads = llama_cpp.llama_set_n_threads
        self._logits_ith = llama_cpp.llama_get_logits_ith
        self._lock = threading.Lock()
        # The model's worker thread (started on the first call), shared by every caller's event loop.
        self._pool = compute_pool("dyad-turn-text")

    @staticmethod
    def context(last_reply: str = "") -> str:
        """The prompt up to the user's words: the system prompt, the avatar's last reply, the user's turn."""
        context = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        if last_reply.strip():
            context += f"<|im_start|>assistant\n{last_reply.strip()[-LAST_REPLY_CHARS:]}<|im_end|>\n"
        return f"{context}<|im_start|>user\n"

    def prompt(self, words: str, last_reply: str = "") -> str:
        """The chat prompt whose next token is judged."""
        return self.context(last_reply) + words_only(words)

    def probability(self, words: str, last_reply: str = "", *, last_word_probability: float = 1.0) -> float:
        """Probability that the user's ``words`` end a sentence (blocking). Empty words: 1.0 (nothing to
        wait for).

        ``last_word_probability``: the recogniser's probability that the last word was said
        (:class:`agent.stt.Transcript`). Below ``DOUBT_BELOW`` the words may be a cut phrase that Whisper
        completed ("what time does this mean"): the probability is the mix of the words'
        and the words' without the last one, weighted by it, and never above the words' own (a doubted
        word only ever makes the end less certain)."""
        spoken = words_only(words)
        if not spoken:
            return 1.0
        before = spoken.rpartition(" ")[0]
        doubted = bool(before) and last_word_probability < DOUBT_BELOW
        with self._lock:
            self._set_threads(self._llm.ctx, self._threads, self._judge_threads)
            # The shorter prompt first: the words' own then only adds the last word's tokens.
            p_before = self._end_probability(self.prompt(before, last_reply)) if doubted else 0.0
            p = self._end_probability(self.prompt(words, last_reply))
        if not doubted:
            return p
        said = min(max(last_word_probability, 0.0), 1.0)
        return min(p, said * p + (1.0 - said) * p_before)

    def _end_probability(self, prompt: str) -> float:
        """The probability that the token after ``prompt`` is one of ``END_PIECES`` (lock held)."""
        self._evaluate(prompt)
        last = self._logits_ith(self._llm.ctx, -1)  # the last evaluated token's
        logits = np.ctypeslib.as_array(last, shape=(self._vocab,)).astype(np.float64)  # (vocab,)
        shifted = np.exp(logits - logits.max())
        return float(shifted[self._ends].sum() / shifted.sum())

    def prime(self, last_reply: str = "") -> None:
        """Evaluate the context now (blocking), so that the next :meth:`probability` with the same
        ``last_reply`` reads only the user's words: a reply's 50-80 tokens cost 0.3-1.5 s on one busy
        core, too long to wait for in a pause. Words read ahead after that context are kept."""
        with self._lock:
            self._set_threads(self._llm.ctx, self._threads, self._threads)
            self._evaluate(self.context(last_reply), logits=False)

    def read_ahead(self, words: str, last_reply: str = "", *, partial: bool = False) -> None:
        """Evaluate the prompt up to ``words`` now (blocking), so that a verdict on words that begin with
        them reads only the rest: about 10 ms a token on one core, most of a verdict's time when it comes
        after a pause (docs/design.md, "End of turn"). ``partial``: an interim transcript, whose last
        word may be cut off by the end of its audio, so it is left out."""
        spoken = words_only(words).split()
        if partial:
            spoken = spoken[:-1]
        if not spoken:
            return
        with self._lock:
            self._set_threads(self._llm.ctx, self._judge_threads, self._judge_threads)
            self._evaluate(self.prompt(" ".join(spoken), last_reply), logits=False)

    def reset(self) -> None:
        """Forget everything evaluated (the next call reads its whole prompt)."""
        with self._lock:
            self._llm.reset()  # type: ignore[no-untyped-call]

    def _evaluate(self, text: str, *, logits: bool = True) -> None:
        """Bring the context's tokens to ``text``'s, evaluating only what the held prefix lacks. With
        ``logits`` the last token is evaluated even when held (its logits are read next); without, held
        tokens beyond ``text``'s are kept."""
        llm = self._llm
        tokens = llm.tokenize(text.encode(), add_bos=False, special=True)[-(CONTEXT_TOKENS - 1) :]
        held = llm.input_ids[: llm.n_tokens]
        same = 0  # the evaluated prefix still valid for this text (llama.cpp keeps its cache)
        for a, b in zip(held, tokens if not logits else tokens[:-1], strict=False):
            if a != b:
                break
            same += 1
        if not logits and same == len(tokens):
            return  # all held already
        llm.n_tokens = same
        llm.eval(tokens[same:])

    async def judge(
        self, words: str, last_reply: str = "", *, last_word_probability: float = 1.0
    ) -> TextVerdict:
        """:meth:`probability` on the model's worker thread, timed."""

        def timed() -> TextVerdict:
            start = time.perf_counter()
            p = self.probability(words, last_reply, last_word_probability=last_word_probability)
            return TextVerdict(p, time.perf_counter() - start)

        return await asyncio.get_running_loop().run_in_executor(self._pool, timed)

    async def prime_async(self, last_reply: str = "") -> None:
        """:meth:`prime` on the model's worker thread."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.prime, last_reply)

    async def read_ahead_async(self, words: str, last_reply: str = "", *, partial: bool = False) -> None:
        """:meth:`read_ahead` on the model's worker thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, lambda: self.read_ahead(words, last_reply, partial=partial))

    def close(self) -> None:
        """Stop the worker thread (a call in progress finishes)."""
        self._pool.shutdown(wait=False)
