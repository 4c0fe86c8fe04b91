"""The text corpus: size, variety, and a fixed held-out split."""

from __future__ import annotations

import hashlib

import pytest

from avatar_core.data import corpus

# (count, SHA-256 of the sentences joined by newlines) of corpus version 3, recorded before its text moved
# from code into data files. Data sets are generated from these exact sentences: if this fails on
# purpose, bump CORPUS_VERSION and record the new values.
VERSION_3 = {
    "all": (4290, "04d12c8f88d1eee2a03cd23bf2598bd0934ed51810d2ecaf541d4e6f7468fd40"),
    "train": (4066, "682b9a1e52abbe7645c129a95143cc359b311cbb640d4e294a7fc8bf795a1fdd"),
    "heldout": (224, "e7d35f77e96eddb57d58833b244fea52b261038cdef6a45784a7621899a0a07e"),
}


def test_version_3_sentences_content_split_and_order_are_unchanged() -> None:
    assert corpus.CORPUS_VERSION == "3"
    lists = {"all": corpus.sentences(), "train": corpus.split("train"), "heldout": corpus.split("heldout")}
    for name, texts in lists.items():
        digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()
        assert (len(texts), digest) == VERSION_3[name], f"the {name} sentences changed"


def test_corpus_is_large_and_deduplicated() -> None:
    texts = corpus.sentences()
    assert len(texts) >= 3000
    assert len(set(texts)) == len(texts)
    assert all(t == t.strip() and t for t in texts)
    assert corpus.sentences() == texts  # fixed order


def test_split_is_disjoint_about_five_percent_and_covers_the_corpus() -> None:
    train, heldout = corpus.split("train"), corpus.split("heldout")
    assert not set(train) & set(heldout)
    assert len(train) + len(heldout) == len(corpus.sentences())
    assert len(heldout) >= 150
    assert 0.035 < len(heldout) / len(corpus.sentences()) < 0.065


def test_split_is_fixed_by_the_text_itself() -> None:
    heldout = corpus.split("heldout")
    for text in ("Whoops, sorry!", "Before we begin, may I have your member number?"):
        assert text in heldout and corpus.is_heldout(text)
    assert "It's 3:45 pm, so you still have time." in corpus.split("train")
    # a sentence's side depends only on its text, never on what else is in the corpus
    assert corpus.is_heldout("Whoops, sorry!") and not corpus.is_heldout("Yes, please.")


def test_lengths_cover_short_and_long_sentences() -> None:
    words = [len(t.split()) for t in corpus.sentences()]
    assert sum(w <= 4 for w in words) >= 150
    assert sum(w >= 25 for w in words) >= 150
    assert 5 < sorted(words)[len(words) // 2] < 20


def test_corpus_has_typed_numbers_names_and_bilabials() -> None:
    text = " ".join(corpus.sentences())
    for marker in ("$", "%", ":", "Dr.", "Room ", "@", "km", "1st", "555-"):
        assert marker in text, marker
    assert sum(text.count(ch) for ch in "pbmPBM") / len(text) > 0.04
    assert sum(t.endswith("?") for t in corpus.sentences()) >= 200
    assert sum(t.endswith("!") for t in corpus.sentences()) >= 100


def test_unknown_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="train"):
        corpus.split("test")  # type: ignore[arg-type]
