"""Text normalisation and the text -> phoneme-token frontend shared by Kokoro and the joint model."""

from __future__ import annotations

import random
import re

import pytest

from avatar_core import bundled
from avatar_core.data import corpus
from avatar_core.text.frontend import (
    PAD,
    PAD_ID,
    SYMBOL_TO_ID,
    VOCAB,
    decode,
    encode,
    kokoro_phonemes,
    phonemes,
)
from avatar_core.text.normalize import cardinal, normalize, ordinal, paired


@pytest.mark.parametrize(
    ("typed", "spoken"),
    [
        # cardinals, ordinals, decimals, negatives, large numbers, years
        ("I have 3 cats.", "I have three cats."),
        ("The 1st, 2nd, 3rd and 21st.", "The first, second, third and twenty-first."),
        ("Add 2.5 cups.", "Add two point five cups."),
        ("It dropped to -4 degrees.", "It dropped to minus four degrees."),
        ("We had 3,000,000 visitors.", "We had three million visitors."),
        ("The river is 1,250 km long.", "The river is one thousand two hundred fifty kilometers long."),
        (
            "Built in 1999, fixed in 2005 and 2015.",
            "Built in nineteen ninety-nine, fixed in two thousand five and twenty fifteen.",
        ),
        ("The 1990s!", "The nineteen nineties!"),
        # times
        ("It's 3:45 pm, so hurry.", "It's three forty-five PM, so hurry."),
        ("Open 9:00 to 17:30.", "Open nine o'clock to seventeen thirty."),
        ("At 6:05 a.m. Then we left.", "At six oh five AM. Then we left."),
        ("Lunch at noon, or at 12 noon?", "Lunch at noon, or at twelve noon?"),
        ("Dinner at 7 pm.", "Dinner at seven PM."),
        # money and percentages
        ("That's $12.50.", "That's twelve dollars and fifty cents."),
        ("Only $1 or $0.05!", "Only one dollar or five cents!"),
        ("It's £8.50 or €3.", "It's eight pounds and fifty pence or three euros."),
        ("A $2.5 million grant.", "A two point five million dollars grant."),
        ("Save 15% or 2.5%.", "Save fifteen percent or two point five percent."),
        ("That's 99¢.", "That's ninety-nine cents."),
        # phone numbers and codes, digit by digit with pauses between groups
        ("Call 555-0199.", "Call five five five, zero one nine nine."),
        ("Call (617) 555-0143.", "Call six one seven, five five five, zero one four three."),
        ("Your PIN is 0042.", "Your PIN is zero zero four two."),
        ("The card ending in 4821?", "The card ending in four eight two one?"),
        # abbreviations
        (
            "Dr. Smith and Mr. Jones met Mrs. Lee and Ms. Park.",
            "Doctor Smith and Mister Jones met Missus Lee and Miz Park.",
        ),
        ("St. Mary's is on Bishop St.", "Saint Mary's is on Bishop Street."),
        ("We're at 221 Baker St., next door.", "We're at two twenty-one Baker Street, next door."),
        ("Try 42 Pine Ave. Or call.", "Try forty-two Pine Avenue. Or call."),
        ("Pens, paper, etc.", "Pens, paper, et cetera."),
        ("Fruit, e.g. plums, i.e. food.", "Fruit, for example plums, that is food."),
        ("Cats vs. dogs, Gate No. 7.", "Cats versus dogs, Gate number seven."),
        ("Room 204, Flight 457.", "Room two oh four, Flight four fifty-seven."),
        # units, symbols, ranges
        (
            "It's 5 km, 2 kg, 30 cm and 25 min.",
            "It's five kilometers, two kilograms, thirty centimeters and twenty-five minutes.",
        ),
        ("Wait 1 h at 50 km/h.", "Wait one hour at fifty kilometers per hour."),
        (
            "Rock & Roll, order #12, mail me@example.com",
            "Rock and Roll, order number twelve, mail me at example dot com",
        ),
        ("It takes 3-5 days, Mon-Fri.", "It takes three to five days, Monday to Friday."),
        # prosody punctuation is kept
        ("Well — maybe; no: yes? Yes! Hmm...", "Well — maybe; no: yes? Yes! Hmm…"),
        ("Wait -- what?", "Wait — what?"),
    ],
)
def test_normalize(typed: str, spoken: str) -> None:
    assert normalize(typed) == spoken


def test_number_words() -> None:
    assert cardinal(0) == "zero"
    assert cardinal(115) == "one hundred fifteen"
    assert cardinal(1_000_001) == "one million one"
    assert ordinal(12) == "twelfth" and ordinal(40) == "fortieth" and ordinal(103) == "one hundred third"
    assert (
        paired(1805) == "eighteen oh five"
        and paired(1900) == "nineteen hundred"
        and paired(2000) == "two thousand"
    )


def test_whole_corpus_normalizes_to_words_and_punctuation() -> None:
    for text in corpus.sentences():
        spoken = normalize(text)
        assert re.fullmatch(r"[A-Za-z ,.?!;:'—…-]+", spoken), (text, spoken)


def test_vocab_is_kokoros_table() -> None:
    kokoro = bundled.kokoro_vocab()
    assert kokoro == SYMBOL_TO_ID
    assert VOCAB[PAD_ID] == PAD and len(VOCAB) == max(kokoro.values()) + 1
    for symbol, token in kokoro.items():
        assert encode(symbol) == [token]
        assert VOCAB[token] == symbol


def test_phonemes_have_no_digits_and_keep_the_final_period() -> None:
    symbols = phonemes("Dr. Smith paid $12.50 at 3:45 pm.")
    assert not any(ch.isdigit() for ch in symbols)
    assert symbols.endswith(".") and symbols.count(".") == 1
    assert "twelve" not in symbols and "θɹˈi" in symbols  # "three" as phonemes
    assert set(symbols) <= set(SYMBOL_TO_ID)


def test_phonemes_keep_prosody_marks_in_place() -> None:
    symbols = phonemes("Hello, world! How are you? Fine; thanks: well — ok...")
    assert [ch for ch in symbols if ch in ",!?;:—…"] == [",", "!", "?", ";", ":", "—", "…"]
    assert symbols.startswith("həlˈO, wˈɜɹld!")
    assert phonemes("Yes, (really).") == phonemes("Yes, really.")


def test_phonemes_map_espeak_diphthongs_to_kokoro_symbols() -> None:
    assert kokoro_phonemes("aɪ eɪ oʊ dʒ tʃ") == "I A O ʤ ʧ"
    symbols = phonemes("I may go, enjoy the cheese.")
    assert {"I", "A", "O", "Y", "ʤ", "ʧ"} <= set(symbols)


def test_encode_decode_round_trip() -> None:
    symbols = phonemes("Please bring me the blue map, Bob!")
    ids = encode(symbols)
    assert ids == [bundled.kokoro_vocab()[ch] for ch in symbols]
    assert decode(ids) == symbols
    assert decode([PAD_ID, *ids, PAD_ID]) == symbols


def test_encode_and_decode_reject_what_is_not_in_the_vocabulary() -> None:
    with pytest.raises(ValueError, match="'7' is not in the vocabulary"):
        encode("ab7")
    with pytest.raises(ValueError, match="token id 7"):
        decode([7])
    with pytest.raises(ValueError, match="token id 999"):
        decode([999])


def test_empty_and_punctuation_only_text() -> None:
    assert phonemes("") == ""
    assert phonemes("...") == ""


def test_any_typed_junk_normalizes_without_digits_or_errors() -> None:
    rng = random.Random(7)
    alphabet = "0123456789 $£€%:.,-/#&@+()abcAPMkmgh'\"!?;—…¢°x"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25)))
        assert not any(ch.isdigit() for ch in normalize(text)), text
    spoken = "Agent zero zero seven, eight, eight thousand three hundred thirty-two"
    assert normalize("Agent 007, 8,8332") == spoken
