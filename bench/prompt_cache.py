"""How much of each turn's prompt the embedded llama.cpp server evaluates again. Prints JSON.

    .venv/bin/python bench/prompt_cache.py [--persona default] [--turns 16] [--passages llm] [--no-warm]
        [--no-read-ahead] [--sessions 1] [--server-cache-mb MB]

Replays a conversation (the latency benchmark's questions) through the Session's own prompt assembly:
``Answerer.answer`` decides each turn with ``ChatHistory.messages()``, LLM answers are streamed by
``Answerer.reply`` through :class:`agent.llm.ChatLLM` from the embedded server, the history records the
user's words and the reply, and the prompt is warmed between turns (``ChatLLM.warm``; ``--no-warm``
leaves it out), as the Session does, the slid window before a reply that slides it is recorded
(``ChatHistory.slid_for_reply``) as well, and each question is read ahead as its interim transcripts would
be, one every two words (``Answerer.prompt_ahead``; ``--no-read-ahead`` leaves it out).
Per LLM turn it reports the server's own numbers, read from its log
(llama-cpp-python, verbose): prompt tokens reused from the KV cache (``prefix-match hit``), tokens
evaluated (llama.cpp's own prompt eval timer is left out: it reads ~0 ms for some long prompts); plus the
time to the first token seen by the client.
``--sessions N`` runs N conversations (each from its own offset in the questions) on the one server,
taking turns one turn each, as several browser tabs or rooms sharing the process's server do; the
server has one context, so without its prompt-state cache (``--server-cache-mb``, 0: off) each turn
evaluates again what the other sessions displaced. Each request also reports whether the server
loaded a saved state (``cache_hit``: ``Llama._create_completion: cache hit``), and the run the
server's resident memory (the cache's states are held in it).
``--passages llm`` hands the persona's passages to the LLM instead of quoting them (the path whose
per-turn facts change the prompt); the default persona has no knowledge. CPU timings on a busy machine
are not the product's numbers; token counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from latency import QUESTIONS, command_line, emit, percentile

from agent.knowledge import Answerer, LLMAnswer
from agent.llm import ChatHistory, ChatLLM, LLMError
from agent.persona import Persona, load_persona
from integrations.llm.local_server import (
    DEFAULT_CACHE_MB,
    LOCAL_API_KEY,
    LocalLLMServer,
    prompt_figures,
)


def server_numbers(lines: list[str]) -> dict[str, Any]:
    """The prompt-cache figures of one request, from the log lines it wrote."""
    return dataclasses.asdict(prompt_figures(lines))


def server_memory_mb(pid: int | None) -> dict[str, float | None]:
    """The server process's resident memory now and at its peak (Linux ``/proc``), in MiB."""
    fields: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    if pid is None:
        return fields
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    names = {"VmRSS:": "rss_mb", "VmHWM:": "peak_rss_mb"}
    for line in status.splitlines():
        key, _, value = line.partition("\t")  # "VmRSS:\t  123456 kB"
        if key in names:
            fields[names[key]] = round(int(value.split()[0]) / 1024, 1)
    return fields


class ServerLog:
    """The server's log lines since the last look (requests are made one at a time)."""

    def __init__(self, server: LocalLLMServer) -> None:
        self.server = server
        self.seen = len(server.log_tail(10**6))

    def new_numbers(self) -> dict[str, Any]:
        lines = self.server.log_tail(10**6)
        numbers = server_numbers(lines[self.seen :])
        self.seen = len(lines)
        return numbers


class Conversation:
    """One session's side of the bench: its own history and ChatLLM, the Session's prompt assembly."""

    def __init__(
        self,
        number: int,
        persona: Persona,
        answerer: Answerer,
        llm: ChatLLM,
        questions: list[str],
        read_ahead: bool = True,
    ) -> None:
        self.number = number
        self.read_ahead = read_ahead
        self.answerer = answerer
        self.llm = llm
        self.history = ChatHistory(persona.llm.system_prompt, persona.llm.history_turns)
        self.questions = questions
        self.rows: list[dict[str, Any]] = []

    async def turn(self, number: int, log: ServerLog) -> None:
        """Ask the conversation's ``number``-th question (1-based), as the Session does."""
        question = self.questions[number - 1]
        read_ahead_tokens = None
        if self.read_ahead and self.llm.warm_prompts:  # the Session, at each interim transcript
            read_ahead_tokens = 0
            words = question.split()
            for heard in range(2, len(words), 2):  # an interim transcript about every two words
                messages = self.answerer.prompt_ahead(" ".join(words[:heard]), self.history.messages())
                if messages is not None:
                    await self.llm.warm(messages)
                    read_ahead_tokens += log.new_numbers()["evaluated_tokens"] or 0
        answer = self.answerer.answer(question, self.history.messages())
        self.history.add_user(question)
        if not isinstance(answer, LLMAnswer):
            self.history.add_assistant(answer.text)
            self.rows.append({"session": self.number, "turn": number, "answer": answer.kind})  # no warm-up
            return
        log.new_numbers()  # whatever the server wrote after the last request ended (its cache save)
        started = time.perf_counter()
        ttft = None
        reply: list[str] = []
        error = None
        try:
            async for delta in self.answerer.reply(self.llm, answer):  # as the Session says it
                if not isinstance(delta, str):
                    continue
                if ttft is None:
                    ttft = 1000 * (time.perf_counter() - started)
                reply.append(delta)
        except LLMError as exc:
            error = str(exc)
        numbers = log.new_numbers()
        slid = self.history.slid_for_reply()
        slid_warm_up = None
        if self.llm.warm_prompts and slid is not None:  # the Session, when the reply starts playing
            await self.llm.warm(slid)
            slid_warm_up = log.new_numbers()
        self.history.add_assistant("".join(reply), generated=True)
        warm_up = None
        if self.llm.warm_prompts:  # what the Session does once an LLM reply is recorded
            await self.llm.warm(self.history.messages())
            warm_up = log.new_numbers()
        self.rows.append(
            {
                "session": self.number,
                "turn": number,
                "answer": "llm",
                "messages": len(answer.messages),
                **numbers,
                "ttft_ms": None if ttft is None else round(ttft, 1),
                "error": error,
                "warm_up": warm_up,
                "slid_warm_up": slid_warm_up,
                "read_ahead_evaluated_tokens": read_ahead_tokens,
            }
        )


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Token and time figures of LLM requests ``rows`` (the first of each session already left out)."""

    def column(name: str) -> list[float]:
        return [float(r[name]) for r in rows if r.get(name) is not None]

    return {
        "evaluated_tokens_sum": sum(column("evaluated_tokens")),
        "reused_tokens_sum": sum(column("reused_tokens")),
        "evaluated_tokens": {
            "p50": percentile(column("evaluated_tokens"), 50),
            "max": max(column("evaluated_tokens"), default=None),
        },
        "cache_hits": sum(1 for r in rows if r.get("cache_hit")),
        "warm_up_evaluated_tokens_sum": sum(
            r[key]["evaluated_tokens"] or 0 for r in rows for key in ("warm_up", "slid_warm_up") if r.get(key)
        ),
        "read_ahead_evaluated_tokens_sum": sum(column("read_ahead_evaluated_tokens")),
        "ttft_ms": {"p50": percentile(column("ttft_ms"), 50), "p95": percentile(column("ttft_ms"), 95)},
    }


async def run(
    name: str,
    persona: Persona,
    turns: int,
    warm: bool,
    sessions: int = 1,
    cache_mb: int = 0,
    read_ahead: bool = True,
) -> dict[str, Any]:
    answerer = Answerer(persona)
    # Each session asks the questions from its own offset, so the conversations differ.
    offset = max(1, len(QUESTIONS) // sessions)
    questions = [(QUESTIONS * 3)[n * offset :][:turns] for n in range(sessions)]
    if turns > len(questions[-1]):
        raise SystemExit(f"--turns is at most {len(questions[-1])} with --sessions {sessions}")
    async with LocalLLMServer(cache_mb=cache_mb) as server:
        conversations = [
            Conversation(
                n + 1,
                persona,
                answerer,
                ChatLLM(persona.llm, server.base_url, api_key=LOCAL_API_KEY, seed=0, warm_prompts=warm),
                questions[n],
                read_ahead,
            )
            for n in range(sessions)
        ]
        log = ServerLog(server)
        try:
            for number in range(1, turns + 1):  # the sessions take turns, one turn each
                for conversation in conversations:
                    await conversation.turn(number, log)
            memory = server_memory_mb(server.pid)
        finally:
            for conversation in conversations:
                await conversation.llm.aclose()
    measured = [
        [r for r in c.rows if r["answer"] == "llm" and r["evaluated_tokens"] is not None]
        for c in conversations
    ]
    later_by_session = [rows[1:] for rows in measured]  # a session's first request has nothing cached
    result: dict[str, Any] = {
        "bench": "prompt_cache",
        "command": command_line("bench/prompt_cache.py"),
        "date": date.today().isoformat(),
        "persona": name,
        "passage_answers": persona.knowledge.passage_answers,
        "warm_up": warm,
        "read_ahead": warm and read_ahead,
        "sessions": sessions,
        "server_cache_mb": cache_mb,
        "server_memory": memory,
        "llm_turns": sum(map(len, measured)),
        "after_the_first": summary([r for later in later_by_session for r in later]),
    }
    if sessions > 1:
        result["per_session"] = [
            {"session": n + 1, **summary(later)} for n, later in enumerate(later_by_session)
        ]
    result["turns"] = sorted(
        (r for c in conversations for r in c.rows), key=lambda r: (r["turn"], r["session"])
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persona", default="library_receptionist")
    parser.add_argument("--turns", type=int, default=16)
    parser.add_argument(
        "--passages", choices=["auto", "llm", "quote"], default="llm", help="knowledge.passage_answers"
    )
    parser.add_argument(
        "--no-warm", action="store_true", help="without the Session's prompt warm-up between turns"
    )
    parser.add_argument(
        "--no-read-ahead",
        action="store_true",
        help="without the Session's read-ahead of the user's words from interim transcripts",
    )
    parser.add_argument(
        "--sessions", type=int, default=1, help="conversations taking turns on the one server"
    )
    parser.add_argument(
        "--server-cache-mb",
        type=int,
        default=DEFAULT_CACHE_MB,
        help="the server's prompt-state RAM cache in MiB (0: none; default: LocalLLMServer's)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    base = load_persona(args.persona)
    persona = base.model_copy(
        update={
            # A long timeout: a slow prompt is what is measured, and a retry would hide it.
            "llm": base.llm.model_copy(
                update={"greeting": "", "max_tokens": 40, "timeout_s": 120.0, "max_retries": 0}
            ),
            "knowledge": base.knowledge.model_copy(update={"passage_answers": args.passages}),
        }
    )
    result = asyncio.run(
        run(
            args.persona,
            persona,
            args.turns,
            not args.no_warm,
            sessions=args.sessions,
            cache_mb=args.server_cache_mb,
            read_ahead=not args.no_read_ahead,
        )
    )
    emit(result, args.out)


if __name__ == "__main__":
    main()
