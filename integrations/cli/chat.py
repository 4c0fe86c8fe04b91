"""``dyad chat``: talk to a persona in the terminal, typed, to try its knowledge before deploying it.

No face, voice or microphone: each typed line goes through what the Session does with a user turn, and
nothing else. The persona's :class:`~agent.knowledge.Answerer` decides the answer (a curated answer, a
tool, a kiosk action, a hand-off, the unknown line, or the LLM with the persona's facts); an LLM answer
streams from the persona's endpoint with the Session's fallback line if it fails; an action or a
hand-off is the event the Session publishes (:func:`agent.session.answer_events`). The LLM (for the
embedded model, its local server) starts only when an answer needs it.

``--text`` answers one question with one JSON line: ``answer``, ``kind``, ``source``, ``score`` and
``timing_ms`` (question to the whole answer; ``retrieval_ms`` of it deciding; ``llm_start_ms`` apart,
when the embedded server had to start), and ``events`` when it published any.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console

from agent.events import to_dict
from agent.knowledge import Answer, Answerer, LLMAnswer
from agent.llm import ChatHistory, ChatLLM, LLMError
from agent.persona import EMBEDDED, Persona
from agent.session import answer_events

QUIT = {"quit", "exit", "bye", ":q"}


@dataclass
class ChatReply:
    """One answer, how it was decided and how long it took."""

    answer: str
    kind: str
    source: str | None
    score: float
    timing_ms: float  # the question to the whole answer (an LLM server start excluded)
    retrieval_ms: float
    llm_start_ms: float | None = None  # the embedded LLM server had to start first
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """The one-line JSON of ``--text``."""
        data: dict[str, Any] = {
            "answer": self.answer,
            "kind": self.kind,
            "source": self.source,
            "score": round(self.score, 3),
            "timing_ms": round(self.timing_ms, 1),
            "retrieval_ms": round(self.retrieval_ms, 2),
        }
        if self.llm_start_ms is not None:
            data["llm_start_ms"] = round(self.llm_start_ms, 1)
        if self.events:
            data["events"] = self.events
        return json.dumps(data, ensure_ascii=False)


class TextChat:
    """A typed conversation with ``persona``: its knowledge and tools, its LLM, its history window.

    Use as ``async with TextChat(persona) as chat: reply = await chat.ask("...")``.
    """

    def __init__(self, persona: Persona, *, seed: int = 0) -> None:
        self.persona = persona
        self.seed = seed
        self.answerer = Answerer(persona)
        self.history = ChatHistory(persona.llm.system_prompt, persona.llm.history_turns)
        self.turns = 0
        self._llm: ChatLLM | None = None
        self._resources = contextlib.AsyncExitStack()

    async def __aenter__(self) -> TextChat:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._resources.aclose()

    async def _open_llm(self) -> tuple[ChatLLM, float | None]:
        """The persona's LLM, started on first need; the second value is the server start time (ms)."""
        if self._llm is not None:
            return self._llm, None
        started = time.perf_counter()
        base_url, api_key, start_ms = self.persona.llm.base_url, None, None
        if base_url == EMBEDDED:
            from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer

            server = await self._resources.enter_async_context(LocalLLMServer())
            base_url, api_key = server.base_url, LOCAL_API_KEY
            start_ms = 1000 * (time.perf_counter() - started)
        self._llm = ChatLLM(self.persona.llm, base_url, api_key, seed=self.seed)
        self._resources.push_async_callback(self._llm.aclose)
        return self._llm, start_ms

    async def ask(self, text: str, on_text: Callable[[str], None] | None = None) -> ChatReply:
        """Answer ``text`` as the Session answers a user turn; ``on_text`` gets the reply as it comes."""
        text = text.strip()
        self.turns += 1
        started = time.perf_counter()
        answer = self.answerer.answer(text, self.history.messages())
        self.history.add_user(text)
        start_ms = None
        called: list[Answer] = []  # functions the LLM called
        if isinstance(answer, LLMAnswer):
            llm, start_ms = await self._open_llm()
            if start_ms is not None:
                started += start_ms / 1000
            parts: list[str] = []
            try:
                async for delta in self.answerer.reply(llm, answer):  # tools, grounding check
                    if not isinstance(delta, str):
                        called.append(delta)
                        continue
                    parts.append(delta)
                    if on_text is not None:
                        on_text(delta)
            except LLMError as exc:
                if not parts:
                    parts.append(self.persona.llm.fallback_line)
                    if on_text is not None:
                        on_text(parts[0])
                print(f"llm error: {exc}", file=sys.stderr)
            reply = "".join(parts).strip()
        else:
            reply = answer.text
            if on_text is not None:
                on_text(reply)
        self.history.add_assistant(reply, generated=isinstance(answer, LLMAnswer))
        elapsed_ms = 1000 * (time.perf_counter() - started)
        events = [
            to_dict(e)
            for done in (*called, answer)
            for e in answer_events(done, elapsed_ms / 1000, self.turns)
        ]
        meta = answer.metadata()
        return ChatReply(
            answer=reply,
            kind=answer.kind,
            source=meta.get("source"),
            score=answer.score,
            timing_ms=elapsed_ms,
            retrieval_ms=answer.retrieval_ms,
            llm_start_ms=start_ms,
            events=events,
        )


async def _one(persona: Persona, text: str) -> ChatReply:
    async with TextChat(persona) as chat:
        return await chat.ask(text)


async def _interactive(persona: Persona, console: Console) -> None:
    name = persona.identity.display_name
    console.print(f"Talking to {name} ({', '.join(sorted(QUIT))} or Ctrl-D to leave).", highlight=False)
    async with TextChat(persona) as chat:
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            if line.strip().lower() in QUIT:
                break
            if not line.strip():
                continue
            console.print(f"{name}> ", end="", highlight=False)
            reply = await chat.ask(line, lambda delta: console.print(delta, end="", highlight=False))
            console.print()
            detail = f"{reply.kind}" + (f" from {reply.source}" if reply.source else "")
            detail += f", score {reply.score:.2f}, {reply.timing_ms:.0f} ms"
            console.print(f"  [dim]({detail})[/]", highlight=False)
            for event in reply.events:
                console.print(f"  [yellow]event[/] {json.dumps(event)}", highlight=False)


def chat(
    persona_name: str | None = typer.Option(None, "--persona", help="persona name or YAML path"),
    text: str | None = typer.Option(
        None, "--text", help="one question: print one JSON line with the answer, its source and timing"
    ),
) -> None:
    """Talk to a persona in the terminal, typed: its knowledge, tools and LLM, without face or voice."""
    from avatar_core.config import AppSettings
    from integrations.cli.persona import load_or_exit
    from integrations.llm.local_server import LocalServerError

    persona = load_or_exit(persona_name or AppSettings().persona)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        if text is not None:
            if not text.strip():
                raise typer.BadParameter("the question is empty", param_hint="--text")
            print(asyncio.run(_one(persona, text)).to_json())
        else:
            asyncio.run(_interactive(persona, Console(soft_wrap=True)))
    except (LocalServerError, LLMError) as exc:
        errors.print(f"[bold red]cannot reach the LLM[/]: {exc}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def register(app: typer.Typer) -> None:
    """Add ``dyad chat`` to ``app``."""
    app.command("chat")(chat)
