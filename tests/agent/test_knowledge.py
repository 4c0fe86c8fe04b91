"""The answer layer: FTS5 retrieval, direct answers, tools and actions, the unknown line, bad knowledge."""

from __future__ import annotations

import socket
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.knowledge import (
    ActionAnswer,
    Answerer,
    DirectAnswer,
    HandoffAnswer,
    LLMAnswer,
    ToolAnswer,
    UnknownAnswer,
    chunk_markdown,
    content_terms,
    numbers_in,
    sentences,
    ungrounded_numbers,
)
from agent.llm import ChatLLM
from agent.persona import PersonaError, load_persona
from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer

UNKNOWN = "I don't know that, but the front desk can help."
NOW = datetime(2025, 3, 4, 21, 42, tzinfo=UTC)  # a Tuesday, 3:42 pm in Chicago

BAKERY_MD = """\
# Corner Bakery

## Cakes

We bake birthday cakes to order. Order at least two days ahead; a cake for ten people costs 30 dollars.

## Allergies

Every loaf is baked in a kitchen that also handles nuts. Gluten-free bread is baked on Fridays.
"""

BAKERY_FAQ = """\
faq:
  - question: Do you deliver?
    alternatives:
      - Can you bring bread to my house?
    answer: Yes, we deliver within two miles for 3 dollars.
"""


def write_persona(folder: Path, knowledge: str, llm_url: str = "embedded") -> Path:
    (folder / "bakery.md").write_text(BAKERY_MD)
    (folder / "faq.yaml").write_text(BAKERY_FAQ)
    path = folder / "baker.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        identity: {{display_name: Bo, livekit_identity: bakery-bo}}
        llm:
          base_url: {llm_url}
          system_prompt: You are Bo at the Corner Bakery.
          greeting: Hello!
          fallback_line: Sorry?
        """)
        + knowledge
    )
    return path


KNOWLEDGE = f"""\
knowledge:
  files: [faq.yaml, bakery.md]
  unknown_line: "{UNKNOWN}"
  timezone: America/Chicago
  opening_hours: {{monday: 07:00-16:00, tuesday: 07:00-16:00, saturday: 08:00-12:00}}
  faq:
    - question: Where is the bakery?
      alternatives:
        - What is your address?
      answer: We're at 12 Mill Street, next to the post office.
  actions:
    - name: print_receipt
      description: Print the last receipt.
      say: Here is your receipt.
      triggers:
        - print my receipt
"""


@pytest.fixture
def answerer(tmp_path: Path) -> Answerer:
    return Answerer(load_persona(str(write_persona(tmp_path, KNOWLEDGE))), now=lambda: NOW)


def test_paraphrased_question_gets_the_curated_fact(answerer: Answerer) -> None:
    answer = answerer.answer("Hi, could you tell me the address of the bakery please?")
    assert isinstance(answer, DirectAnswer)
    assert answer.text == "We're at 12 Mill Street, next to the post office."
    assert answer.source == "Where is the bakery?"
    meta = answer.metadata()
    assert meta["answer"] == "direct" and meta["score"] >= 0.6 and meta["retrieval_ms"] >= 0.0

    for question in ("Can I get bread delivered?", "Is delivery available?"):
        delivery = answerer.answer(question)
        assert isinstance(delivery, DirectAnswer) and "3 dollars" in delivery.text, question


def test_a_passage_fact_is_quoted_with_the_embedded_llm(answerer: Answerer) -> None:
    answer = answerer.answer("How much is a birthday cake for ten people?")
    assert isinstance(answer, DirectAnswer)
    assert "30 dollars" in answer.text and answer.source == "bakery.md#1"
    gluten = answerer.answer("When can I buy gluten free bread?")
    assert isinstance(gluten, DirectAnswer) and "Fridays" in gluten.text


def test_off_topic_question_gets_the_unknown_line(answerer: Answerer) -> None:
    for question in ("What's the weather like tomorrow?", "Can you fix my bicycle?", "Who won the match?"):
        answer = answerer.answer(question)
        assert isinstance(answer, UnknownAnswer), question
        assert answer.text == UNKNOWN


def test_tools_and_actions_are_answered_without_the_llm(answerer: Answerer) -> None:
    time_answer = answerer.answer("What time is it?")
    assert isinstance(time_answer, ToolAnswer) and time_answer.text == "It's 3:42 pm."
    assert answerer.answer("Are you open now?").text == "Yes, we're open now, until 4 pm."
    assert answerer.answer("Are you open on Sunday?").text == "We're closed on Sunday."
    action = answerer.answer("Can you print my receipt?")
    assert isinstance(action, ActionAnswer) and action.name == "print_receipt"
    assert action.text == "Here is your receipt."
    handoff = answerer.answer("I'd like to talk to a real person")
    assert isinstance(handoff, HandoffAnswer) and handoff.reason == "I'd like to talk to a real person"


class RecordingListener:
    """A TCP listener on 127.0.0.1 that counts the connections made to it (an LLM endpoint stand-in)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[RecordingListener]:
    recording = RecordingListener()
    yield recording
    recording.close()


def test_direct_answers_never_reach_the_llm_endpoint(tmp_path: Path, listener: RecordingListener) -> None:
    url = f"http://127.0.0.1:{listener.port}/v1"
    persona = load_persona(str(write_persona(tmp_path, KNOWLEDGE, llm_url=url)))
    answerer = Answerer(persona, now=lambda: NOW)
    assert not answerer.quote_passages  # a configured endpoint gets the passages
    for question in ("What is your address?", "What time is it?", "What's the capital of Peru?"):
        assert not isinstance(answerer.answer(question), LLMAnswer)
    llm_answer = answerer.answer("How much is a birthday cake for ten people?")
    assert isinstance(llm_answer, LLMAnswer)  # returned for the Session to stream, not streamed here
    assert listener.connections == 0


def test_llm_answer_carries_the_passages_and_the_rule(tmp_path: Path) -> None:
    knowledge = KNOWLEDGE + "  passage_answers: llm\n"
    answerer = Answerer(load_persona(str(write_persona(tmp_path, knowledge))), now=lambda: NOW)
    history = [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}]
    answer = answerer.answer(
        "Does your kitchen handle nuts?", [*history, {"role": "assistant", "content": "Hi!"}]
    )
    assert isinstance(answer, LLMAnswer)
    assert answer.sources[0] == "bakery.md#2"
    # The system prompt stays the persona's own (a prefix the LLM server's cache keeps); this turn's facts
    # and the rule for them come with the question.
    assert answer.messages[0]["content"] == "You are Bo at the Corner Bakery."
    assert [m["role"] for m in answer.messages] == ["system", "user", "assistant", "user"]
    assert answer.messages[1:3] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hi!"},
    ]
    latest = answer.messages[-1]["content"]
    assert "handles nuts" in latest and "using only these facts" in latest and UNKNOWN in latest
    assert latest.endswith("Question: Does your kitchen handle nuts?")


def test_a_persona_without_facts_chats_with_the_llm(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "identity: {display_name: P, livekit_identity: p}\n"
        "llm:\n  system_prompt: You are P.\n  greeting: Hi\n  fallback_line: Sorry?\n"
    )
    answerer = Answerer(load_persona(str(path)), now=lambda: NOW)
    assert isinstance(answerer.answer("Tell me about the moon"), LLMAnswer)
    assert answerer.answer("What time is it?").text == "It's 9:42 pm."  # UTC: no time zone given


def test_the_prompt_read_ahead_is_the_requests_start(tmp_path: Path) -> None:
    """What the embedded server evaluates while the user speaks is the start of the request their whole turn
    makes: the same messages, the question without its last (maybe cut) word."""
    path = tmp_path / "plain.yaml"
    path.write_text(
        "identity: {display_name: P, livekit_identity: p}\n"
        "llm:\n  system_prompt: You are P.\n  greeting: Hi\n  fallback_line: Sorry?\n"
    )
    answerer = Answerer(load_persona(str(path)), now=lambda: NOW)
    history = [{"role": "system", "content": "You are P."}, {"role": "user", "content": "hi"}]
    history.append({"role": "assistant", "content": "Hello!"})
    ahead = answerer.prompt_ahead("Tell me about the mo", history)
    turn = answerer.answer("Tell me about the moon and the stars.", history)
    assert isinstance(turn, LLMAnswer) and ahead is not None
    assert ahead[:-1] == turn.messages[:-1]
    assert ahead[-1] == {"role": "user", "content": "Tell me about the"}
    assert turn.messages[-1]["content"].startswith(ahead[-1]["content"])
    assert answerer.prompt_ahead("Tell", history) is None  # nothing before the last word
    # "What time does the" is the clock's so far, but the turn goes on to ask the LLM: read its request.
    assert isinstance(answerer.answer("What time does the", history), ToolAnswer)
    ahead = answerer.prompt_ahead("What time does the library", history)
    turn = answerer.answer("What time does the library open?", history)
    assert isinstance(turn, LLMAnswer) and ahead is not None
    assert ahead[:-1] == turn.messages[:-1]
    assert ahead[-1] == {"role": "user", "content": "What time does the"}


@pytest.mark.parametrize("name", ["library_receptionist", "clinic_checkin"])
def test_every_curated_question_of_the_shipped_personas_finds_its_answer(name: str) -> None:
    answerer = Answerer(load_persona(name), now=lambda: NOW)
    for entry in answerer.faq:
        for phrasing in (entry.question, *entry.alternatives):
            answer = answerer.answer(phrasing)
            assert isinstance(answer, DirectAnswer) and answer.text == entry.answer, phrasing


# -- bad knowledge sections ---------------------------------------------------------------------------


def locations(path: Path) -> dict[str, str]:
    with pytest.raises(PersonaError) as caught:
        load_persona(str(path))
    return {issue.location: issue.message for issue in caught.value.issues}


def test_a_missing_knowledge_file_names_the_field(tmp_path: Path) -> None:
    path = write_persona(tmp_path, "knowledge:\n  files: [faq.yaml, nowhere.md]\n")
    assert "knowledge.files.1" in locations(path)


def test_an_empty_answer_names_the_field(tmp_path: Path) -> None:
    inline = write_persona(tmp_path, "knowledge:\n  faq:\n    - question: Open?\n      answer: '  '\n")
    assert "knowledge.faq.0.answer" in locations(inline)
    (tmp_path / "bad.yaml").write_text("faq:\n  - {question: a, answer: b}\n  - {question: c, answer: ''}\n")
    in_file = write_persona(tmp_path, "knowledge:\n  files: [bad.yaml]\n")
    message = locations(in_file)["knowledge.files.0"]
    assert "bad.yaml: faq.1.answer" in message


@pytest.mark.parametrize(
    ("knowledge", "location", "words"),
    [
        ("  timezone: Mars/Olympus\n", "knowledge.timezone", "unknown time zone"),
        ("  opening_hours: {monday: 9-5}\n", "knowledge.opening_hours", "HH:MM-HH:MM"),
        ("  opening_hours: {monday: '18:00-09:00'}\n", "knowledge.opening_hours", "closes before it opens"),
        ("  opening_hours: {someday: closed}\n", "knowledge.opening_hours.someday", ""),
        ("  files: [empty.md]\n", "knowledge.files", "is empty"),
        ("  files: [notes.pdf]\n", "knowledge.files", ".md/.markdown/.txt"),
        ("  direct_threshold: 0\n", "knowledge.direct_threshold", ""),
    ],
)
def test_bad_knowledge_fields(tmp_path: Path, knowledge: str, location: str, words: str) -> None:
    (tmp_path / "empty.md").write_text("  \n")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    found = locations(write_persona(tmp_path, "knowledge:\n" + knowledge))
    assert any(loc.startswith(location) and words in msg for loc, msg in found.items()), found


# -- text helpers ------------------------------------------------------------------------------------


def test_markdown_is_chunked_by_heading_and_paragraph() -> None:
    passages = chunk_markdown(BAKERY_MD + "\n- first item\n- second item\n", "b.md")
    assert [p.title for p in passages] == [
        "Corner Bakery > Cakes",
        "Corner Bakery > Allergies",
        "Corner Bakery > Allergies",
    ]
    assert sentences(passages[-1].text) == ["first item", "second item"]
    assert sentences(passages[0].text)[1].startswith("Order at least")


def test_content_terms_drop_filler() -> None:
    assert content_terms("Hi, could you tell me what's the price of printing, please?") == [
        "price",
        "printing",
    ]


def test_ways_of_asking_and_synonyms_reach_the_same_fact(tmp_path: Path) -> None:
    faq = """\
faq:
  - question: Where are the toilets?
    answer: The toilets are behind the counter.
  - question: Is there a fee for a missed order?
    answer: A missed order costs 4 dollars.
  - question: I'm a new customer
    answer: Welcome! New customers get a loyalty card.
  - question: Can I get an interpreter?
    answer: Yes, our interpreters speak Spanish and Polish.
"""
    (tmp_path / "more.yaml").write_text(faq)
    knowledge = KNOWLEDGE.replace("files: [faq.yaml, bakery.md]", "files: [faq.yaml, bakery.md, more.yaml]")
    answerer = Answerer(load_persona(str(write_persona(tmp_path, knowledge))), now=lambda: NOW)
    assert content_terms("It's my first visit") == ["new"]
    assert content_terms("I can't find my card") == ["lost", "card"]
    assert content_terms("How much is a missed order?") == ["cost", "missed", "order"]
    for question, words in [
        ("Where is the restroom?", "behind the counter"),
        ("Is there a charge if I miss my order?", "4 dollars"),
        ("It's my first time here", "loyalty card"),
        ("How much is a missed order?", "4 dollars"),
    ]:
        answer = answerer.answer(question)
        assert isinstance(answer, DirectAnswer), (question, answer)
        assert words in answer.text
    # A group spells its words out: "internet" does not match "interpreter" through a short prefix.
    assert isinstance(answerer.answer("Do you have internet?"), UnknownAnswer)


def test_invented_numbers_are_found() -> None:
    assert numbers_in("Open 9:00 to 8:30, ten cents, 2.50 dollars") == {"9", "8:30", "10", "2.5"}
    assert ungrounded_numbers("We open at 9 am and it costs 5 dollars.", "open 9:00 to 16:00") == {"5"}
    # A clock time in 12- or 24-hour form is the same time.
    assert ungrounded_numbers("We close at 5 pm, or 17:30 on Fridays.", "until 17:00; Fri 5:30 pm") == set()
    assert ungrounded_numbers("We close at 6 pm.", "until 17:00") == {"6"}
    # "one" as a pronoun states no number; as a count it does.
    assert ungrounded_numbers("The one on the left; one of us will come.", "") == set()
    assert ungrounded_numbers("You can borrow one book.", "") == {"1"}


# -- with the real embedded LLM (slow: one test) -----------------------------------------------------


async def test_the_embedded_llm_streams_an_llm_answer(tmp_path: Path) -> None:
    knowledge = KNOWLEDGE + "  passage_answers: llm\n"
    persona = load_persona(str(write_persona(tmp_path, knowledge)))
    answer = Answerer(persona, now=lambda: NOW).answer("How much is a birthday cake for ten people?")
    assert isinstance(answer, LLMAnswer)
    async with LocalLLMServer() as server:
        llm = ChatLLM(persona.llm, server.base_url, api_key=LOCAL_API_KEY, seed=0)
        try:
            reply = "".join([delta async for delta in llm.stream(answer.messages)])
        finally:
            await llm.aclose()
    assert reply.strip()
