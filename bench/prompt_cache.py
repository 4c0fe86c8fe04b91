"""How much of each turn's prompt the embedded llama.cpp server evaluates again. Prints JSON.

    .venv/bin/python bench/prompt_cache.py [--persona default] [--turns 16] [--passages llm] [--no-warm]

Replays a conversation (the latency benchmark's questions) through the Session's own prompt assembly:
``Answerer.answer`` decides each turn with ``ChatHistory.messages()``, LLM answers are streamed by
``Answerer.reply`` through :class:`agent.llm.ChatLLM` from the embedded server, the history records the
user's words and the reply, and the prompt is warmed between turns (``ChatLLM.warm``; ``--no-warm``
leaves it out), as the Session does. Per LLM turn it reports the server's own numbers, read from its log
(llama-cpp-python, verbose): prompt tokens reused from the KV cache (``prefix-match hit``), tokens
evaluated (llama.cpp's own prompt eval timer is left out: it reads ~0 ms for some long prompts); plus the
time to the first token seen by the client.
``--passages llm`` hands the persona's passages to the LLM instead of quoting them (the path whose
per-turn facts change the prompt); the default persona has no knowledge. CPU timings on a busy machine
are not the product's numbers; token counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from latency import QUESTIONS, percentile

from agent.knowledge import Answerer, LLMAnswer
from agent.llm import ChatHistory, ChatLLM, LLMError
from agent.persona import Persona, load_persona
from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer

_PREFIX = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")


def server_numbers(lines: list[str]) -> dict[str, Any]:
    """The prompt-cache figures of one request, from the log lines it wrote."""
    reused = evaluated = None
    said = [
        line.strip()
        for line in lines
        if _PREFIX.search(line) or "prompt eval time" in line or "cached" in line
    ]
    for line in lines:
        if match := _PREFIX.search(line):
            reused, evaluated = int(match.group(1)), int(match.group(2))
        elif (match := _PROMPT_EVAL.search(line)) and evaluated is None:
            reused, evaluated = 0, int(match.group(2))  # no prefix hit: the whole prompt was evaluated
    return {"reused_tokens": reused, "evaluated_tokens": evaluated, "log": said}


async def run(name: str, persona: Persona, turns: int, warm: bool) -> dict[str, Any]:
    answerer = Answerer(persona)
    history = ChatHistory(persona.llm.system_prompt, persona.llm.history_turns)
    rows: list[dict[str, Any]] = []
    async with LocalLLMServer() as server:
        llm = ChatLLM(persona.llm, server.base_url, api_key=LOCAL_API_KEY, seed=0, warm_prompts=warm)
        try:
            seen = len(server.log_tail(10**6))

            def new_numbers() -> dict[str, Any]:
                nonlocal seen
                lines = server.log_tail(10**6)
                numbers = server_numbers(lines[seen:])
                seen = len(lines)
                return numbers

            async def warm_up() -> dict[str, Any] | None:
                """What the Session does once an LLM reply is recorded (off the critical path)."""
                if not warm:
                    return None
                await llm.warm(history.messages())
                return new_numbers()

            for number, question in enumerate((QUESTIONS * 2)[:turns], start=1):
                answer = answerer.answer(question, history.messages())
                history.add_user(question)
                if not isinstance(answer, LLMAnswer):
                    history.add_assistant(answer.text)
                    rows.append({"turn": number, "answer": answer.kind})  # no warm-up after it
                    continue
                started = time.perf_counter()
                ttft = None
                reply: list[str] = []
                error = None
                try:
                    async for delta in answerer.reply(llm, answer):  # as the Session says it
                        if not isinstance(delta, str):
                            continue
                        if ttft is None:
                            ttft = 1000 * (time.perf_counter() - started)
                        reply.append(delta)
                except LLMError as exc:
                    error = str(exc)
                history.add_assistant("".join(reply))
                numbers = new_numbers()
                rows.append(
                    {
                        "turn": number,
                        "answer": "llm",
                        "messages": len(answer.messages),
                        **numbers,
                        "ttft_ms": None if ttft is None else round(ttft, 1),
                        "error": error,
                        "warm_up": await warm_up(),
                    }
                )
        finally:
            await llm.aclose()
    measured = [r for r in rows if r["answer"] == "llm" and r["evaluated_tokens"] is not None]
    later = measured[1:]  # the first request has nothing cached

    def column(rows_: list[dict[str, Any]], name: str) -> list[float]:
        return [float(r[name]) for r in rows_ if r.get(name) is not None]

    return {
        "bench": "prompt_cache",
        "command": " ".join([".venv/bin/python", "bench/prompt_cache.py", *map(shlex.quote, sys.argv[1:])]),
        "date": date.today().isoformat(),
        "persona": name,
        "passage_answers": persona.knowledge.passage_answers,
        "warm_up": warm,
        "llm_turns": len(measured),
        "after_the_first": {
            "evaluated_tokens_sum": sum(column(later, "evaluated_tokens")),
            "reused_tokens_sum": sum(column(later, "reused_tokens")),
            "evaluated_tokens": {
                "p50": percentile(column(later, "evaluated_tokens"), 50),
                "max": max(column(later, "evaluated_tokens"), default=None),
            },
            "ttft_ms": {
                "p50": percentile(column(later, "ttft_ms"), 50),
                "p95": percentile(column(later, "ttft_ms"), 95),
            },
        },
        "turns": rows,
    }


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
    text = json.dumps(asyncio.run(run(args.persona, persona, args.turns, not args.no_warm)), indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
