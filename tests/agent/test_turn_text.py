"""The words' end-of-turn check (agent/turn_text.py) with the bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import pytest

from agent.persona import TurnTakingConfig
from agent.turn_text import MIN_VETO_WORDS, TextTurnModel, vetoes, words_only


@pytest.fixture(scope="module")
def model() -> TextTurnModel:
    return TextTurnModel()


# (sentence, a cut inside it where a person might pause)
CUTS = [
    ("Please remind me what time the doctor can see me on Friday.",
     "Please remind me what time the doctor can see me on"),
    ("I'd like to book an appointment for Tuesday morning.", "I'd like to book an"),
    ("Can you check whether the book I reserved last week has arrived?",
     "Can you check whether the book I reserved"),
]  # fmt: skip


def test_words_are_read_without_case_or_punctuation() -> None:
    assert words_only("  Hello, there!  Is it  Tuesday?") == "hello there is it tuesday"


@pytest.mark.parametrize(("sentence", "cut"), CUTS)
def test_a_finished_sentence_ends_and_a_cut_one_does_not(
    model: TextTurnModel, sentence: str, cut: str
) -> None:
    whole, part = model.probability(sentence), model.probability(cut)
    assert part < TurnTakingConfig().text_veto_below <= whole, (whole, part)


def test_the_last_reply_is_context(model: TextTurnModel) -> None:
    # An answer to a question ends where the same words alone might go on.
    alone = model.probability("on tuesday at ten")
    answer = model.probability("on tuesday at ten", "Which day and time would suit you?")
    assert answer > alone


def test_the_kept_prefix_gives_the_same_answer_as_a_fresh_context(model: TextTurnModel) -> None:
    first = model.probability(CUTS[0][0], "Hello!")
    model.probability(CUTS[1][1])  # another prompt in between: only a shorter prefix stays valid
    again = model.probability(CUTS[0][0], "Hello!")
    fresh = TextTurnModel().probability(CUTS[0][0], "Hello!")
    assert again == pytest.approx(first, abs=1e-4) and fresh == pytest.approx(first, abs=1e-4)


def test_nothing_said_is_not_held_and_short_turns_are_never_vetoed(model: TextTurnModel) -> None:
    assert model.probability("  ...  ") == 1.0
    assert not vetoes("thank you", 0.0, 0.05)  # under MIN_VETO_WORDS words
    assert vetoes("I would like", 0.0, 0.05) and MIN_VETO_WORDS == 3
    assert not vetoes("I would like", 0.0, 0.0)  # 0 turns the check off


async def test_judge_runs_off_the_loop_and_times_the_call(model: TextTurnModel) -> None:
    verdict = await model.judge(CUTS[1][1])
    assert verdict.probability == pytest.approx(model.probability(CUTS[1][1]), abs=1e-4)
    assert verdict.inference_s > 0


def test_priming_reads_the_reply_ahead_and_changes_nothing(model: TextTurnModel) -> None:
    reply = "We open at nine on weekdays and at ten on Saturdays. Is there anything else I can help with?"
    unprimed = TextTurnModel().probability("do you open on sunday", reply)
    model.prime(reply)
    held = model._llm.n_tokens  # the context's tokens, evaluated
    assert held > 20
    assert model.probability("do you open on sunday", reply) == pytest.approx(unprimed, abs=1e-4)


async def test_words_read_ahead_are_kept_and_change_nothing(model: TextTurnModel) -> None:
    reply = "Good morning! How can I help?"
    sentence = CUTS[2][0]
    fresh = TextTurnModel().probability(sentence, reply)
    model.prime(reply)
    primed = model._llm.n_tokens
    # An interim transcript's last word may be cut by the end of its audio: it is left out.
    await model.read_ahead_async("Can you check whether the bo", reply, partial=True)
    partial = model._llm.n_tokens
    assert partial > primed
    read = model._llm.detokenize(model._llm.input_ids[primed:partial].tolist())
    assert read.strip() == b"can you check whether the"
    model.read_ahead("Can you check whether the book I reserved", reply)  # settled words: all of them
    ahead = model._llm.n_tokens
    assert ahead > partial
    model.prime(reply)  # the same context read again keeps the words read after it
    assert model._llm.n_tokens == ahead
    assert model.probability(sentence, reply) == pytest.approx(fresh, abs=1e-4)


def test_a_doubted_last_word_weighs_the_words_without_it(model: TextTurnModel) -> None:
    """Whisper completes a cut question ("what time does the library ..." heard as "... look like"): by
    its doubt in the last word, the verdict leans to the words without it, and never rises."""
    invented = "What time does the library look like?"
    sure = model.probability(invented)
    doubted = model.probability(invented, last_word_probability=0.2)
    without = model.probability("What time does the library look")
    assert doubted == pytest.approx(0.2 * sure + 0.8 * without, abs=1e-4)
    assert doubted < sure
    # Dropping a word may make the rest look complete ("... the address" + a mumbled "on"): no rise.
    cut = "I need to change the address on"
    assert model.probability(cut, last_word_probability=0.2) == pytest.approx(
        model.probability(cut), abs=1e-4
    )
    # Sure enough, or a single word: the words' own probability.
    assert model.probability(invented, last_word_probability=0.95) == pytest.approx(sure, abs=1e-4)
    assert model.probability("Hello", last_word_probability=0.1) == pytest.approx(model.probability("Hello"))
