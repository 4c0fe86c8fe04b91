"""Persona knowledge and the answer policy: what to say to a user's turn before (or instead of) the LLM.

At start-up the persona's curated questions (with their other phrasings), the phrasings that call tools
and actions, and the passages of its Markdown/text files (chunked by heading and paragraph) go into an
in-memory SQLite FTS5 index (porter stemming, BM25 ranking). For each turn :meth:`Answerer.answer` picks:

- a curated answer, tool or action when a phrasing matches with confidence >= ``direct_threshold``
  (spoken at once, exact, no LLM);
- else the passages that contain at least ``min_relevance`` of the question's content words: handed to
  the LLM with the instruction to answer only from them, or (``passage_answers``; the default with the
  embedded SmolLM2-135M, which invents hours and prices even with the facts in front of it) their best
  sentence is quoted, found with FTS5 too;
- else, when the persona has facts at all, its ``unknown_line``: nothing is invented.

A declared action with ``ask`` is a small form: its trigger says the question, and while that question
is the avatar's last line the visitor's answers fill the parameters (``agent.tools.read_slots``) until
the action can be called with them; the state is the conversation itself, nothing is kept here.

Questions and curated phrasings are normalised the same way first: ways of asking that say the same as
a simpler word ("my first visit" -> "new", "sign in" -> "check in"), and a question's word also matches
its synonyms (restroom/toilet, fee/charge/cost...) in every FTS5 query.

:meth:`Answerer.reply` streams an LLM answer: with the persona's tools offered to an endpoint that does
function calling, and each sentence checked for numbers (hours, prices, dates) found in nothing the
model was given; such a sentence ends the reply with the ``unknown_line`` instead.

Confidence of a phrasing = (BM25 of the question against it / BM25 of the phrasing against itself) x
(share of the question's content words it contains, weighted by their IDF): the first says how much of
the phrasing was asked, the second how much of the question it explains. Both come from FTS5 queries.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from agent.llm import ChatLLM, ChatModel, turn_messages
from agent.persona import EMBEDDED, FAQEntry, KioskAction, Persona
from agent.tools import ToolBox, ToolResult, is_question, read_slots, strip_day_words

log = logging.getLogger(__name__)

# Function words and conversational filler: what is left is what the question is about.
STOPWORDS = frozenset(
    """a an the is are am was were be been being do does did doing have has had having i me my mine
    myself we us our ours you your yours he him his she her it its they them their this that these those
    there here what which who whom whose when why how of in on at to for from by with about as into
    onto up out off over under and or but if so than then too very just can could would should will shall
    may might must please hi hello hey thanks thank ok okay um uh er like know tell want wanted wonder
    wondering need needs get got let lets also yes no not any some much many one anything something
    someone somebody bit really maybe excuse sorry again still else way go going after before during
    until till since around near nearby inside outside between within without through across every each
    other another more most less few all both only same such anywhere somewhere everywhere thing things
    stuff right available possible offer offers provide come comes coming came long ready nearest""".split()  # noqa: SIM905
)
_CONTRACTIONS = (
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'(s|re|ve|ll|d|m)\b"), ""),
)
# Ways of asking that say the same as a simpler word: applied to questions and curated phrasings alike.
_PHRASES = (
    (re.compile(r"\b(?:can not|cannot|could not) find (my|our)\b"), r"lost \1"),  # my card: lost it
    (re.compile(r"\b(come|comes|coming|came) back\b"), r"\1"),  # results "come back": they arrive
    (re.compile(r"\b(?:first (?:time|visit)|never been here)\b"), "new"),  # a new patient, member...
    (re.compile(r"\bsign(?:ing)? in\b"), "check in"),
    (re.compile(r"\b(?:pick|picking|collect|collecting) (?:up )?\b"), "get "),
    (re.compile(r"\bno[- ]shows?\b"), "missed appointment"),
    (re.compile(r"\bhow much (?:is|are|does|do|will|would)\b"), "cost"),  # asks a price
)
# Words a visitor uses for the same thing: a question's word also matches the others of its group (in
# the FTS5 query), and a passage holding any of them counts as holding the word.
SYNONYMS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "toilet toilets restroom restrooms bathroom bathrooms washroom loo",
        "fee fees charge charges cost costs price prices fine fines",
        "doctor doctors physician gp",
        "medicine medicines medication medications meds drugs",
        "wifi internet wireless",
        "lab laboratory",
        "vaccine vaccines vaccination vaccinations vaccinated shot shots jab",
        "child children kid kids daughter daughters son sons",
        "id identification",
        "copay copayment copayments",
        "borrow borrowing loan",
        "limit limits maximum max",
        "lost lose misplaced",
        "accessible accessibility wheelchair wheelchairs disabled",
        # British and American spellings
        "colour colours color colors",
        "centre centres center centers",
        "catalogue catalogues catalog catalogs",
        "programme programmes program programs",
        "theatre theater",
    )
)
_SYNONYMS_OF: dict[str, frozenset[str]] = {word: group for group in SYNONYMS for word in group}
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_PREFIX_MIN = 4  # shorter words are matched exactly: "car*" would match "card"
_TRUNCATE_MIN = 7
_TERM_CACHE_SIZE = 10_000
_FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"
_MAX_PASSAGE_CHARS = 600


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, contractions expanded."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    for pattern, replacement in (*_CONTRACTIONS, *_PHRASES):
        text = pattern.sub(replacement, text)
    return text


def content_terms(text: str) -> list[str]:
    """The words a question is about (no stop words or filler), each once, in order."""
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(normalise(text)):
        if token not in STOPWORDS and (len(token) > 1 or token.isdigit()):
            seen.setdefault(token, None)
    return list(seen)


def _fts_term(term: str) -> str:
    """One word as an FTS5 expression: the word or any of its :data:`SYNONYMS`."""
    group = _SYNONYMS_OF.get(term)
    if group is None:
        return _fts_word(term)
    # The group spells out its forms: no shortened prefixes ("internet" must not match "interpreter").
    return "(" + " OR ".join(f'"{word}"' for word in sorted(group)) + ")"


def _fts_word(term: str) -> str:
    """One word as an FTS5 expression. The index and the query are both porter-stemmed, but the stemmer
    keeps some forms apart ("delivery" -> "deliveri", "deliver" -> "deliv"): a long word also matches as
    a prefix of its first letters."""
    if term.isdigit() or len(term) < _PREFIX_MIN:
        return f'"{term}"'
    if len(term) >= _TRUNCATE_MIN:
        return f'("{term}"* OR "{term[: max(5, len(term) - 3)]}"*)'
    return f'"{term}"*'


def fts_query(terms: Iterable[str]) -> str:
    """An FTS5 OR query over ``terms`` (long words as prefixes)."""
    return " OR ".join(_fts_term(t) for t in terms)


# ---------------------------------------------------------------------------------------------------
# Passages
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """A chunk of a knowledge file: its section title and text; ``id`` is ``file#n``."""

    id: str
    title: str
    text: str


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^([-*+]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")


def sentences(text: str) -> list[str]:
    """The sentences (and list items, without their bullets) of a passage."""
    parts = (_LIST_ITEM.sub("", part.strip()) for part in _SENTENCE_END.split(text))
    return [part for part in parts if part]


def chunk_markdown(text: str, source: str) -> list[Passage]:
    """Split Markdown or plain text into passages: one per paragraph (a list stays whole), each under
    its heading path; a paragraph longer than ~600 characters is split between sentences."""
    passages: list[Passage] = []
    headings: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        # A list item starts a new line (a sentence of its own); other lines join into one.
        body = ""
        for line in paragraph:
            line = line.strip()
            body += ("\n" if _LIST_ITEM.match(line) and body else " ") + line
        body = body.strip()
        paragraph.clear()
        if not body:
            return
        title = " > ".join(headings)
        for piece in _split_long(body):
            passages.append(Passage(f"{source}#{len(passages) + 1}", title, piece))

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            headings[level - 1 :] = [heading.group(2)]
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    return passages


def _split_long(body: str) -> list[str]:
    if len(body) <= _MAX_PASSAGE_CHARS:
        return [body]
    pieces: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?])\s+", body):
        if current and len(current) + len(sentence) + 1 > _MAX_PASSAGE_CHARS:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


# ---------------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------------

IntentKind = Literal["faq", "tool"]


@dataclass(frozen=True)
class Intent:
    """A phrasing that leads to a curated answer (``target``: FAQ index) or a tool/action (its name)."""

    kind: IntentKind
    target: str
    phrasing: str


@dataclass(frozen=True)
class IntentMatch:
    """The best phrasing of one intent for a question, and how sure the match is (0..1)."""

    intent: Intent
    confidence: float
    bm25: float


@dataclass(frozen=True)
class PassageHit:
    """A passage found for a question: BM25 and the share of the question's words it contains."""

    passage: Passage
    bm25: float
    coverage: float


class KnowledgeIndex:
    """Intents and passages in an in-memory SQLite FTS5 database (thread-safe, one lock)."""

    def __init__(self, intents: Sequence[Intent], passages: Sequence[Passage]) -> None:
        self.intents = list(intents)
        self.passages = list(passages)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(f"CREATE VIRTUAL TABLE intents USING fts5(phrasing, tokenize='{_FTS_TOKENIZER}')")
        self._db.execute(
            f"CREATE VIRTUAL TABLE passages USING fts5(title, body, tokenize='{_FTS_TOKENIZER}')"
        )
        self._db.executemany(
            "INSERT INTO intents(rowid, phrasing) VALUES (?, ?)",
            [(i, " ".join(content_terms(it.phrasing))) for i, it in enumerate(self.intents)],
        )
        self._db.executemany(
            "INSERT INTO passages(rowid, title, body) VALUES (?, ?, ?)",
            [(i, p.title, p.text) for i, p in enumerate(self.passages)],
        )
        # Each passage's sentences, to quote the one that answers (title words count too).
        self._sentences: list[tuple[int, str]] = [
            (i, sentence) for i, p in enumerate(self.passages) for sentence in sentences(p.text)
        ]
        self._db.execute(
            f"CREATE VIRTUAL TABLE sentences USING fts5(title, body, tokenize='{_FTS_TOKENIZER}')"
        )
        self._db.executemany(
            "INSERT INTO sentences(rowid, title, body) VALUES (?, ?, ?)",
            [(j, self.passages[i].title, text) for j, (i, text) in enumerate(self._sentences)],
        )
        self._row_of = {p.id: i for i, p in enumerate(self.passages)}
        self._term_cache: dict[str, _Term] = {}
        # The score a phrasing gets when asked word for word: the denominator of its confidence.
        self._self_score: dict[int, float] = {}
        for i, intent in enumerate(self.intents):
            terms = content_terms(intent.phrasing)
            self._self_score[i] = self._bm25("intents", terms, rowid=i) if terms else 0.0

    def _bm25(self, table: str, terms: Sequence[str], rowid: int) -> float:
        row = self._db.execute(
            f"SELECT -bm25({table}) FROM {table} WHERE {table} MATCH ? AND rowid = ?",
            (fts_query(terms), rowid),
        ).fetchone()
        return float(row[0]) if row else 0.0

    def _containing(self, table: str, term: str) -> set[int]:
        rows = self._db.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (_fts_term(term),))
        return {int(r[0]) for r in rows}

    def _terms(self, terms: Sequence[str]) -> list[_Term]:
        """Which intents and passages contain each term, and the term's BM25 IDF over both together: a
        word the knowledge uses everywhere ("library") says little, one it never uses says the most."""
        total = len(self.intents) + len(self.passages)
        found = []
        for term in terms:
            if term not in self._term_cache:  # the knowledge never changes: look each word up once
                intents, passages = self._containing("intents", term), self._containing("passages", term)
                count = len(intents) + len(passages)
                idf = math.log((total - count + 0.5) / (count + 0.5) + 1.0)
                if len(self._term_cache) >= _TERM_CACHE_SIZE:
                    self._term_cache.clear()
                self._term_cache[term] = _Term(idf, intents, passages)
            found.append(self._term_cache[term])
        return found

    def match_intents(self, terms: Sequence[str], limit: int = 30) -> list[IntentMatch]:
        """The intents whose phrasings best match ``terms``, most confident first (one per intent)."""
        if not terms or not self.intents:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, -bm25(intents) FROM intents WHERE intents MATCH ? ORDER BY rank LIMIT ?",
                (fts_query(terms), limit),
            ).fetchall()
            stats = self._terms(terms)
        weight = sum(t.idf for t in stats)
        best: dict[tuple[str, str], IntentMatch] = {}
        for rowid, score in rows:
            own = self._self_score[rowid]
            asked = min(1.0, score / own) if own > 0 else 0.0
            explained = sum(t.idf for t in stats if rowid in t.intents) / weight
            intent = self.intents[rowid]
            match = IntentMatch(intent, asked * explained, float(score))
            key = (intent.kind, intent.target)
            if key not in best or match.confidence > best[key].confidence:
                best[key] = match
        return sorted(best.values(), key=lambda m: (-m.confidence, -m.bm25))

    def search(self, terms: Sequence[str], limit: int) -> list[PassageHit]:
        """Passages for ``terms`` by BM25, each with the (IDF-weighted) share of ``terms`` it contains."""
        if not terms or not self.passages:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, -bm25(passages, 2.0, 1.0) FROM passages WHERE passages MATCH ? "
                "ORDER BY rank LIMIT ?",
                (fts_query(terms), limit),
            ).fetchall()
            stats = self._terms(terms)
        weight = sum(t.idf for t in stats)
        return [
            PassageHit(
                self.passages[rowid], float(score), sum(t.idf for t in stats if rowid in t.passages) / weight
            )
            for rowid, score in rows
        ]

    def quote(self, terms: Sequence[str], hits: Sequence[PassageHit]) -> tuple[PassageHit, str] | None:
        """The sentence of ``hits`` that holds most of ``terms`` (of the five best by BM25), with the hit it
        is from; a sentence that starts by pointing back ("It is free...") comes with the one before it."""
        rows = {self._row_of[h.passage.id]: h for h in hits}
        if not terms or not rows:
            return None
        allowed = [j for j, (i, _) in enumerate(self._sentences) if i in rows]
        with self._lock:
            found = self._db.execute(
                "SELECT rowid FROM sentences WHERE sentences MATCH ? AND rowid IN "
                f"({','.join(map(str, allowed))}) ORDER BY bm25(sentences, 0.5, 1.0) LIMIT 5",
                (fts_query(terms),),
            ).fetchall()
            stats = self._terms(terms)
            having = [self._containing("sentences", t) for t in terms]
        if not found:
            return None
        # The sentence with most of the question's words (IDF-weighted) wins; BM25 order breaks ties.
        weight = sum(t.idf for t in stats)
        candidates = [int(row[0]) for row in found]
        j = max(
            candidates,
            key=lambda row: (
                sum(t.idf for t, containing in zip(stats, having, strict=True) if row in containing) / weight,
                -candidates.index(row),
            ),
        )
        passage_row, text = self._sentences[j]
        if _POINTS_BACK.match(text) and j > 0 and self._sentences[j - 1][0] == passage_row:
            text = f"{self._sentences[j - 1][1]} {text}"
        return rows[passage_row], text


# When something is wanted ("for next week"): it fills a slot, it is not what is asked about.
_TIME_SLOT = re.compile(r"\b(?:next|this|last|coming) (?:week|month|year|morning|afternoon|evening)\b", re.I)
_POINTS_BACK = re.compile(r"^(it|they|this|that|these|those|there|he|she)\b", re.IGNORECASE)


@dataclass(frozen=True)
class _Term:
    idf: float
    intents: set[int]  # rowids of the intents containing the term
    passages: set[int]


# ---------------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Answer:
    kind: ClassVar[str]
    text: str  # what the avatar says ("" for an LLM answer: the LLM says it)
    score: float = 0.0  # confidence of the match that decided the answer (0..1)
    retrieval_ms: float = 0.0  # time spent deciding, LLM excluded

    def metadata(self) -> dict[str, Any]:
        """What a turn's metrics and logs record about the answer."""
        return {
            "answer": self.kind,
            "score": round(self.score, 3),
            "retrieval_ms": round(self.retrieval_ms, 2),
        }


@dataclass(frozen=True, kw_only=True)
class DirectAnswer(_Answer):
    """Spoken word for word, no LLM: a curated answer (``source`` the curated question) or the sentence of
    a passage that answers (``source`` the passage id, e.g. ``library.md#8``)."""

    kind: ClassVar[str] = "direct"
    source: str
    matched: str  # the phrasing that matched

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": self.source, "matched": self.matched}


@dataclass(frozen=True, kw_only=True)
class ToolAnswer(_Answer):
    """A deterministic tool's answer (time, date, opening hours)."""

    kind: ClassVar[str] = "tool"
    name: str
    args: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": f"tool:{self.name}", "args": self.args}


@dataclass(frozen=True, kw_only=True)
class ActionAnswer(_Answer):
    """A kiosk action to publish (e.g. over MQTT), with the line to say while doing it."""

    kind: ClassVar[str] = "action"
    name: str
    args: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": f"action:{self.name}", "args": self.args}


@dataclass(frozen=True, kw_only=True)
class AskAnswer(_Answer):
    """A declared action needs its parameters first: ``text`` asks for them, and the visitor's answer
    fills them (see ``KioskAction.ask``); nothing is published yet."""

    kind: ClassVar[str] = "ask"
    name: str

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": f"action:{self.name}"}


@dataclass(frozen=True, kw_only=True)
class HandoffAnswer(_Answer):
    """The user asked for a person: say ``text`` and emit ``handoff_requested`` with ``reason``."""

    kind: ClassVar[str] = "handoff"
    reason: str

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": "tool:handoff", "reason": self.reason}


@dataclass(frozen=True, kw_only=True)
class UnknownAnswer(_Answer):
    """Nothing relevant is known: the persona's ``unknown_line``."""

    kind: ClassVar[str] = "unknown"


@dataclass(frozen=True, kw_only=True)
class LLMAnswer(_Answer):
    """Let the LLM answer: stream ``messages`` (system prompt with the facts, history, question)."""

    kind: ClassVar[str] = "llm"
    messages: list[dict[str, str]]
    sources: tuple[str, ...] = ()  # passage ids given as facts
    facts: str = ""  # the facts' text, to check a reply against (see ungrounded_numbers)
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI function definitions offered to the LLM

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "source": ",".join(self.sources) or None}


Answer = DirectAnswer | ToolAnswer | ActionAnswer | AskAnswer | HandoffAnswer | UnknownAnswer | LLMAnswer

GROUNDING_INSTRUCTION = (
    "Answer the visitor in one or two short sentences using only these facts. Do not add times, prices "
    "or numbers that are not in the facts. If the facts do not answer the question, say exactly: {unknown}"
)


class Answerer:
    """Decides each turn's answer from the persona's knowledge and tools; synchronous, no Engine or LLM.

    ``answer(user_text, history)`` takes the conversation so far as chat messages (``ChatHistory
    .messages()``; its system message is replaced) and returns an :data:`Answer`.
    """

    def __init__(self, persona: Persona, *, now: Callable[[], datetime] | None = None) -> None:
        self.persona = persona
        self.config = persona.knowledge
        self.tools = ToolBox(self.config, now=now)
        self.faq: list[FAQEntry] = self.config.faq_entries()
        passages = [p for path in self.config.passage_files() for p in _file_passages(path)]
        passages += [
            Passage(f"faq#{i + 1}", " / ".join([e.question, *e.alternatives]), e.answer)
            for i, e in enumerate(self.faq)
        ]
        self._faq_of_passage = {f"faq#{i + 1}": i for i in range(len(self.faq))}
        if self.tools.hours.known:
            passages.append(Passage("opening_hours", "Opening hours", self.tools.hours.describe_week()))
        intents = [
            Intent("faq", str(i), phrasing)
            for i, entry in enumerate(self.faq)
            for phrasing in (entry.question, *entry.alternatives)
        ]
        intents += [
            Intent("tool", name, phrasing)
            for name, phrasings in self.tools.phrasings().items()
            for phrasing in phrasings
        ]
        self.index = KnowledgeIndex(intents, passages)
        # A persona without facts (no curated questions or files) chats freely; one with facts says
        # its unknown_line rather than let the LLM guess.
        self.has_facts = bool(self.faq or self.config.passage_files())
        mode = self.config.passage_answers
        self.quote_passages = mode == "quote" or (mode == "auto" and persona.llm.base_url == EMBEDDED)
        # Function calling for endpoints that do it; the embedded SmolLM2 does not call tools reliably
        # (the deterministic layer above answers its tools instead).
        self.llm_tools: tuple[dict[str, Any], ...] = (
            tuple(self.tools.openai_tools()) if persona.llm.base_url != EMBEDDED else ()
        )

    def answer(self, user_text: str, history: Sequence[Mapping[str, str]] = ()) -> Answer:
        """The answer to ``user_text``; ``history`` is the conversation before it (chat messages)."""
        start = time.perf_counter()
        answer = self._decide(user_text, history)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        return _with_time(answer, elapsed_ms)

    def prompt_ahead(
        self, words: str, history: Sequence[Mapping[str, str]] = ()
    ) -> list[dict[str, str]] | None:
        """The start of the LLM request of a turn that begins with ``words`` (an interim transcript): its
        prompt up to those words but the last, which the end of the transcript's audio may have cut. Words
        that an intent would answer so far (a curated or tool answer) may still become a question for the
        LLM ("what time does the" -> "... library open?"), so for them it is the request the same words
        would make without the intents. None when the LLM would not answer them even so, or would be
        offered tools (they change the prompt's form). For the embedded server to evaluate while the user
        still speaks (docs/design.md, "The Session")."""
        head = " ".join(words.split()[:-1])
        if not head:
            return None
        answer = self._decide(head, history)
        if not isinstance(answer, LLMAnswer):
            answer = self._decide(head, history, intents=False)
        if not isinstance(answer, LLMAnswer) or answer.tools:
            return None
        return answer.messages

    def _decide(
        self, user_text: str, history: Sequence[Mapping[str, str]], *, intents: bool = True
    ) -> Answer:
        """The answer to ``user_text``; without ``intents``, as if no curated question or tool intent
        matched it."""
        terms = content_terms(user_text)
        # Days and numbers fill a tool's slots ("open on Sunday", "my appointment at four"): the intent is
        # what is asked about them.
        slots_out = _TIME_SLOT.sub(" ", strip_day_words(user_text))
        intent_terms = [t for t in content_terms(slots_out) if t not in _NUMBER_WORDS]
        intent_terms = [t for t in intent_terms if not t.isdigit()] or terms
        matches = self.index.match_intents(intent_terms) if intents else []
        best = matches[0] if matches else None
        confident = best is not None and best.confidence >= self.config.direct_threshold
        form = self._form_in_progress(history)
        # An answer to the action's question fills its parameters; a question or another request
        # (matched with confidence) leaves the form.
        same = best is not None and form is not None and best.intent.target == form.action.name
        if form is not None and not is_question(user_text) and (not confident or same):
            return self._fill_form(form, user_text)
        if best is not None and confident:
            return self._direct(best, user_text)
        hits = [h for h in self.index.search(terms, limit=10) if h.coverage >= self.config.min_relevance]
        hits = hits[: self.config.max_passages]
        top = best.confidence if best else 0.0
        if hits and self.quote_passages:
            quoted = self.index.quote(terms, hits)
            if quoted is not None:
                hit, text = quoted
                if hit.passage.id in self._faq_of_passage:  # a curated answer is said whole
                    entry = self.faq[self._faq_of_passage[hit.passage.id]]
                    return DirectAnswer(
                        text=entry.answer,
                        source=entry.question,
                        matched=hit.passage.title,
                        score=hit.coverage,
                    )
                return DirectAnswer(
                    text=text, source=hit.passage.id, matched=hit.passage.title, score=hit.coverage
                )
        if hits:
            facts = "\n".join(f"- {_passage_line(h.passage)}" for h in hits)
            return LLMAnswer(
                text="",
                messages=self._messages(user_text, history, facts),
                sources=tuple(h.passage.id for h in hits),
                facts=facts,
                score=max(h.coverage for h in hits),
                tools=self.llm_tools,
            )
        if self.has_facts and terms:
            return UnknownAnswer(text=self.config.unknown_line, score=top)
        return LLMAnswer(
            text="", messages=self._messages(user_text, history, ""), score=top, tools=self.llm_tools
        )

    def _form_in_progress(self, history: Sequence[Mapping[str, str]]) -> _Form | None:
        """The action whose question the avatar said last, the visitor's words since it first asked,
        and how many times it has asked again."""
        form: _Form | None = None
        answers: list[str] = []
        for message in reversed(history):
            role, content = message.get("role"), str(message.get("content", "")).strip()
            if role == "user":
                answers.insert(0, content)
                continue
            asking = next((a for a in self.tools.actions.values() if a.ask and content.endswith(a.ask)), None)
            if role != "assistant" or asking is None or (form is not None and asking is not form.action):
                break
            form = _Form(asking, list(answers), 0 if form is None else form.asked_again + 1)
            if content == asking.ask:  # the first time it asked; asking again prefixes what was missing
                break
        if form is None:
            return None
        return replace(form, answers=answers)

    def _fill_form(self, form: _Form, user_text: str) -> Answer:
        action = form.action
        values = read_slots(action.collect, [*form.answers, user_text])
        missing = [p.replace("_", " ") for p in action.parameters if p not in values]
        if not missing:
            return answer_from_tool(self.tools.call(action.name, values))
        if form.asked_again + 1 >= MAX_ASKS:
            log.info("%s: could not read %s from %r", action.name, ", ".join(missing), form.answers)
            reason = f"{action.name}: could not read the {' and '.join(missing)}"
            return HandoffAnswer(text=self.config.handoff_line, reason=reason)
        assert action.ask is not None
        again = f"Sorry, I didn't catch your {' and '.join(missing)}. {action.ask}"
        return AskAnswer(text=again, name=action.name)

    def _direct(self, match: IntentMatch, user_text: str) -> Answer:
        intent = match.intent
        if intent.kind == "faq":
            entry = self.faq[int(intent.target)]
            return DirectAnswer(
                text=entry.answer, source=entry.question, matched=intent.phrasing, score=match.confidence
            )
        result = self.tools.run(intent.target, user_text)
        return answer_from_tool(result, score=match.confidence)

    def _messages(
        self, user_text: str, history: Sequence[Mapping[str, str]], facts: str
    ) -> list[dict[str, str]]:
        context = ""  # with the question, not in the system prompt: see turn_messages
        if facts:
            rule = GROUNDING_INSTRUCTION.format(unknown=self.config.unknown_line)
            context = f"Facts:\n{facts}\n\n{rule}"
        elif self.has_facts:
            context = (
                f"You know no facts about this. If asked for one, say exactly: {self.config.unknown_line}"
            )
        window = [dict(m) for m in history if m.get("role") in {"user", "assistant"}]
        window = window[-2 * self.persona.llm.history_turns :]
        return turn_messages(self.persona.llm.system_prompt, window, user_text, context)

    async def reply(self, llm: ChatModel, answer: LLMAnswer) -> AsyncGenerator[str | Answer, None]:
        """The LLM's reply to ``answer``: its text deltas, and the :data:`Answer` of each function it
        called (an action or hand-off is for the caller to publish) before the text that follows.

        With facts, text is let through a sentence at a time: a sentence that states a number (time,
        price, date) found in nothing the model was given (prompt, facts, conversation, tool results) is
        an invented fact; it is logged, and the reply ends with an :class:`UnknownAnswer` and its text,
        the ``unknown_line``, instead. Raises
        :class:`agent.llm.LLMError` as :meth:`ChatLLM.stream` does.
        """
        called: list[Answer] = []
        grounds = [str(m.get("content", "")) for m in answer.messages]

        def run_tool(name: str, arguments: str) -> str:
            try:
                result = self.tools.call_json(name, arguments)
            except ValueError as exc:
                log.warning("the LLM's call %s(%s) failed: %s", name, arguments[:200], exc)
                return f"error: {exc}"
            called.append(answer_from_tool(result))
            grounds.append(result.text)
            return result.text

        checked = self.has_facts
        pending = ""  # text of the sentence under way, not yet checked
        stream: AsyncIterator[str]
        if answer.tools and isinstance(llm, ChatLLM):  # an OpenAI-compatible endpoint: offer the tools
            stream = llm.stream(answer.messages, answer.tools, run_tool)
        else:
            stream = llm.stream(answer.messages)
        async with _closing(stream) as deltas:
            async for delta in deltas:
                while called:
                    yield called.pop(0)
                if not checked:
                    yield delta
                    continue
                pending += delta
                done, pending = _split_finished(pending)
                for sentence in done:
                    if not self._grounded(sentence, grounds):
                        yield (instead := UnknownAnswer(text=self.config.unknown_line))
                        yield instead.text
                        return
                    yield sentence
        while called:
            yield called.pop(0)
        if pending and not self._grounded(pending, grounds):
            yield (instead := UnknownAnswer(text=self.config.unknown_line))
            yield instead.text
        elif pending:
            yield pending

    def _grounded(self, sentence: str, grounds: Sequence[str]) -> bool:
        invented = ungrounded_numbers(sentence, *grounds)
        if invented:
            log.warning(
                "invented number(s) %s in the LLM's reply %r: said the unknown line instead",
                ", ".join(sorted(invented)),
                sentence.strip()[:200],
            )
        return not invented


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[str]) -> AsyncGenerator[AsyncIterator[str], None]:
    """Close ``stream`` (and so its HTTP request) when the reply ends early."""
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


_FINISHED = re.compile(r"(?<=[.!?])\s+")


def _split_finished(text: str) -> tuple[list[str], str]:
    """The finished sentences of streamed ``text`` (each with the space after it) and the unfinished rest."""
    parts = _FINISHED.split(text)
    if len(parts) == 1:
        return [], text
    spaces = _FINISHED.findall(text)
    return [part + space for part, space in zip(parts[:-1], spaces, strict=True)], parts[-1]


MAX_ASKS = 3  # times an action asks for its parameters before it hands over to a person


@dataclass(frozen=True)
class _Form:
    action: KioskAction
    answers: list[str]  # what the visitor said since the action first asked, oldest first
    asked_again: int


def answer_from_tool(result: ToolResult, *, score: float = 1.0) -> Answer:
    """The :data:`Answer` for a tool's result (also for an LLM's function call)."""
    if result.kind == "ask":
        return AskAnswer(text=result.text, name=result.name, score=score)
    if result.kind == "action":
        return ActionAnswer(text=result.text, name=result.name, args=result.args, score=score)
    if result.kind == "handoff":
        return HandoffAnswer(text=result.text, reason=result.args.get("reason", ""), score=score)
    return ToolAnswer(text=result.text, name=result.name, args=result.args, score=score)


def _with_time(answer: Answer, elapsed_ms: float) -> Answer:
    return replace(answer, retrieval_ms=elapsed_ms)


def _file_passages(path: Path) -> list[Passage]:
    return chunk_markdown(path.read_text(encoding="utf-8"), path.name)


def _passage_line(passage: Passage) -> str:
    section = passage.title.split(" > ")[-1] if passage.title else ""
    return f"{section}: {passage.text}" if section else passage.text


# ---------------------------------------------------------------------------------------------------
# Grounding check
# ---------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
        sixteen seventeen eighteen nineteen twenty""".split()  # noqa: SIM905
    )
}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "hundred": 100, "noon": 12})
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)?|[a-z]+")


def numbers_in(text: str) -> set[str]:
    """The numbers ``text`` states, canonical: ``9:00`` -> 9, ``ten`` -> 10, ``2.50`` -> 2.5."""
    return {primary for primary, _ in _numbers(text)}


_BEFORE_PRONOUN_ONE = frozenset("the this that which any every no each".split())  # noqa: SIM905
_AFTER_PRONOUN_ONE = re.compile(r" (?:of|who|that|which)\b")


def _pronoun_one(text: str, start: int, end: int) -> bool:
    """Whether the "one" at ``text[start:end]`` is a pronoun ("the one on the left", "one of us")."""
    before = text[:start].split()
    return bool(before and before[-1] in _BEFORE_PRONOUN_ONE) or bool(_AFTER_PRONOUN_ONE.match(text, end))


_MERIDIEM = re.compile(r"\s*([ap])\.?m\b\.?")


def _numbers(text: str) -> list[tuple[str, frozenset[str]]]:
    """Each number of ``text``, canonical, with the forms that say the same: a clock hour in 12- and
    24-hour form (``5 pm`` and ``17:00`` are one time)."""
    lowered = text.lower()
    found: list[tuple[str, frozenset[str]]] = []
    for match in _NUMBER.finditer(lowered):
        token = match.group()
        if token.isalpha():
            if token == "one" and _pronoun_one(lowered, match.start(), match.end()):
                continue  # "the one on the left", "one of our staff": not a number
            if token in _NUMBER_WORDS:
                value = str(_NUMBER_WORDS[token])
                found.append((value, frozenset({value})))
            continue
        parts = re.split(r"[:.,]", token)
        meridiem = _MERIDIEM.match(lowered, match.end())
        if ":" in token or (meridiem and token.isdigit()):  # a clock time: 9:00 is 9, 8:30 is 8:30
            hour, minutes = int(parts[0]), parts[1] if len(parts) > 1 else "00"
            hours = {hour}
            if meridiem and meridiem.group(1) == "p" and hour < 12:
                hours.add(hour + 12)
            elif not meridiem and 12 < hour < 24:
                hours.add(hour - 12)
            forms = {h: str(h) if int(minutes) == 0 else f"{h}:{minutes}" for h in hours}
            found.append((forms[hour], frozenset(forms.values())))
        elif len(parts) == 2 and len(parts[1]) == 3 and "," in token:  # 1,000
            value = str(int(parts[0] + parts[1]))
            found.append((value, frozenset({value})))
        else:
            value = str(float(token.replace(",", "."))).removesuffix(".0")
            found.append((value, frozenset({value})))
    return found


def ungrounded_numbers(reply: str, *sources: str) -> set[str]:
    """Numbers in ``reply`` found in none of ``sources`` (facts, the question): invented hours or prices."""
    allowed: set[str] = set()
    for source in sources:
        for _, forms in _numbers(source):
            allowed |= forms
    return {primary for primary, forms in _numbers(reply) if not forms & allowed}
