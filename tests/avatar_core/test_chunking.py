"""Cutting reply text into speakable chunks."""

from __future__ import annotations

from avatar_core.text.chunking import SentenceChunker, chunk_text, ends_sentence, streamed_chunks


def test_first_chunk_ends_at_the_first_clause() -> None:
    chunks = chunk_text("Yes, we do, and it opens at nine, and it closes at eight. Anything else?")
    assert chunks == ["Yes, we do,", "and it opens at nine, and it closes at eight.", "Anything else?"]


def test_short_opening_clause_waits_for_enough_words() -> None:
    assert chunk_text("Yes, of course. Room two is free.")[0] == "Yes, of course."


def test_abbreviations_do_not_end_sentences() -> None:
    assert chunk_text("Yes. Dr. Smith sees you at 3 p.m. today. Please sit down.") == [
        "Yes.",
        "Dr. Smith sees you at 3 p.m. today.",
        "Please sit down.",
    ]


def test_streaming_tokens_give_the_same_chunks() -> None:
    text = "Welcome back, it is good to see you. Your card is ready! Do you need a bag?"
    chunker = SentenceChunker()
    streamed = []
    for i in range(0, len(text), 3):
        streamed += chunker.push(text[i : i + 3])
    streamed += chunker.flush()
    assert streamed == chunk_text(text)


def test_long_sentence_is_split_at_a_clause() -> None:
    long = ", ".join(["we have many books about birds and trees"] * 6) + "."
    chunks = chunk_text("Okay. " + long)
    assert all(len(c.split()) <= 40 for c in chunks) and len(chunks) > 2


def test_a_long_opening_without_punctuation_is_cut_after_a_few_words() -> None:
    chunks = chunk_text("The Central Library is open from nine in the morning until eight at night. Bye.")
    assert chunks[0] == "The Central Library is"
    assert chunks[1] == "open from nine in the morning until eight at night."


def test_a_long_opening_is_cut_as_soon_as_the_next_word_begins() -> None:
    chunker = SentenceChunker(first_max_words=6)
    tokens = ["The", " Central", " Library", " is", " open", " from"]
    assert [chunker.push(token) for token in tokens] == [[]] * 6  # "from" may go on ("fromage")
    assert chunker.push(" nine") == ["The Central Library is open from"]


def test_a_whole_text_ends_its_first_chunk_at_a_sentence_end_in_sight() -> None:
    """A greeting is all there at once: its first sentence is not cut before its last word. Streamed from
    the LLM a word at a time, the same words are cut after four, as the fifth begins."""
    greeting = "Welcome to the Central Library. How can I help you today?"
    assert chunk_text(greeting) == ["Welcome to the Central Library.", "How can I help you today?"]
    assert streamed_chunks(greeting) == ["Welcome to the Central", "Library.", "How can I help you today?"]
    assert (
        chunk_text("It costs 3.5 dollars, or 4 with a bag.")[0] == "It costs 3.5 dollars,"
    )  # "3." ends nothing


def test_ends_sentence_tells_a_chunk_inside_a_sentence_from_its_end() -> None:
    assert (
        ends_sentence("It opens at nine.") and ends_sentence("Really?!") and ends_sentence('He said "yes."')
    )
    assert ends_sentence("We close at eight.  ")
    assert not ends_sentence("Can I pay for") and not ends_sentence("Yes, we do,")
    assert all(
        ends_sentence(c) for c in chunk_text("Yes. Dr. Smith sees you at 3 p.m. today. Sit down.")[:-1]
    )
    assert not ends_sentence(streamed_chunks("Your card can be used in every branch of the library.")[0])
