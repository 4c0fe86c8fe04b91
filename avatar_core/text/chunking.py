"""Cut a stream of reply text into speakable chunks: a short first chunk for latency, then sentences."""

from __future__ import annotations

import re

_STOP = r"[.!?…]+[\"')\]]*"  # a sentence's closing marks
_SENTENCE_END = re.compile(_STOP + r"(?=\s)|\n+")
_LAST_SENTENCE_END = re.compile(_STOP + r"(?=\s|$)|\n+")  # a complete text ends there too
_SENTENCE_AT_END = re.compile(_STOP + r"$")
_CLAUSE_END = re.compile(r"[,;:—]+(?=\s)")
FIRST_MAX_WORDS = 4  # a reply's first chunk, without a clause end, is cut after this many words
NEAR_END_WORDS = 2  # a first chunk runs this many words past its limit to end where a sentence does
_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "e.g.", "i.e.", "etc.", "no.", "a.m.", "p.m."}


class SentenceChunker:
    """``push`` text as it streams in and get back the chunks that are complete; ``flush`` at the end.

    The first chunk ends at the first clause boundary once it has ``first_min_words`` words, or after
    ``first_max_words`` words when no boundary comes, so speech starts as soon as the LLM has a
    speakable phrase (the first chunk is what the user waits for: its LLM tokens and its synthesis);
    later chunks are whole sentences (they are synthesized while the one before plays, so playback is
    gapless), or clauses when a sentence runs past ``max_words``. Four words at most since 2026-12-06 (six
    before): the first audio comes about 70 ms sooner and is no less clear (docs/design.md, "The first
    chunk").
    """

    def __init__(
        self, first_min_words: int = 3, first_max_words: int = FIRST_MAX_WORDS, max_words: int = 30
    ) -> None:
        self.first_min_words = first_min_words
        self.first_max_words = first_max_words
        self.max_words = max_words
        self.buffer = ""
        self.emitted = 0
        self.complete = False  # the whole text is in (push(..., final=True))

    def _cut(self) -> int | None:
        """Where the next chunk ends in the buffer, or None if no chunk is complete yet."""
        cuts = []
        for match in (_LAST_SENTENCE_END if self.complete else _SENTENCE_END).finditer(self.buffer):
            words = self.buffer[: match.start()].split()
            if words and words[-1].lower() + match.group().strip()[:1] in _ABBREVIATIONS:
                continue  # "Dr. Jones" is one sentence
            cuts.append(match.end())
            break
        if self.emitted == 0 or len(self.buffer.split()) > self.max_words:
            minimum = self.first_min_words if self.emitted == 0 else self.max_words // 2
            for match in _CLAUSE_END.finditer(self.buffer):
                if len(self.buffer[: match.start()].split()) >= minimum:
                    cuts.append(match.end())
                    break
        if self.emitted == 0:
            # No clause boundary yet in a long opening: cut after a whole word, since speech synthesis
            # time grows with the chunk and the first chunk is what the user waits for. A word is whole
            # once the next one has begun (the space before it): cut then, not a word later. A sentence
            # or clause end already in sight a word or two on (a whole text, not a stream) ends it instead:
            # "Welcome to the Central Library." is not cut before its last word.
            spans = list(re.finditer(r"\S+\s", self.buffer))
            near = self.first_max_words + NEAR_END_WORDS
            if len(spans) >= self.first_max_words and not any(
                len(self.buffer[:cut].split()) <= near for cut in cuts
            ):
                cuts.append(spans[self.first_max_words - 1].end())
        return min(cuts) if cuts else None

    def push(self, text: str, *, final: bool = False) -> list[str]:
        """Add streamed text; return the chunks now complete (possibly none). ``final``: no more text
        follows, so the text's end is a sentence end."""
        self.buffer += text
        self.complete = self.complete or final
        chunks = []
        while (cut := self._cut()) is not None:
            chunk, self.buffer = self.buffer[:cut].strip(), self.buffer[cut:]
            if chunk:
                chunks.append(chunk)
                self.emitted += 1
        return chunks

    def flush(self) -> list[str]:
        """The rest of the text as a final chunk."""
        rest, self.buffer = self.buffer.strip(), ""
        if rest:
            self.emitted += 1
            return [rest]
        return []


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with a sentence's closing marks (a chunk that does not is followed by the rest
    of its sentence)."""
    return _SENTENCE_AT_END.search(text.rstrip()) is not None


def chunk_text(text: str) -> list[str]:
    """All chunks of a complete text."""
    chunker = SentenceChunker()
    return chunker.push(text, final=True) + chunker.flush()


def streamed_chunks(text: str, first_max_words: int = FIRST_MAX_WORDS) -> list[str]:
    """The chunks of ``text`` arriving as an LLM streams it, a word at a time: a reply's first chunk as the
    Speaker cuts it (a whole text may end its first chunk later, at a sentence end in sight)."""
    chunker = SentenceChunker(first_max_words=first_max_words)
    chunks = []
    for word in re.findall(r"\s*\S+", text):
        chunks += chunker.push(word)
    return chunks + chunker.flush()


def streamed_first_chunk(text: str) -> str:
    """The first chunk the Speaker makes of ``text`` streamed from the LLM (``text`` itself if none)."""
    chunks = streamed_chunks(text)
    return chunks[0] if chunks else text
