"""Answer benchmark: a persona's question file through its answer layer and the real embedded LLM.

    .venv/bin/python bench/answers.py --persona library_receptionist [--questions FILE] [--no-llm]
        [--passage-answers llm --out bench/results/answers_library_receptionist_llm_path.json]

Each question goes through :class:`agent.knowledge.Answerer` (clock fixed at the file's ``now``); an
``llm`` answer is streamed from the persona's LLM (the embedded SmolLM2-135M server by default, seed 0)
through :meth:`Answerer.reply`, as a Session says it (a sentence with an invented number ends the reply
with the unknown line; ``replaced`` counts them).
Reported: the share of in-scope questions whose answer holds every named fact, the share of off-topic
questions declined with the unknown line, numbers in answers that are in neither the knowledge nor the
question (invented hours and prices), per answer kind, and the answer layer's time per turn (LLM
excluded). Prints JSON and writes ``bench/results/answers_<persona>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import yaml

from agent.knowledge import Answerer, LLMAnswer, UnknownAnswer, ungrounded_numbers
from agent.llm import ChatLLM, LLMError
from agent.persona import EMBEDDED, Persona, load_persona
from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer

HERE = Path(__file__).parent
TIMING_REPEATS = 20  # answer() calls per question for the timing figures


def load_questions(path: Path) -> tuple[datetime, list[dict[str, Any]]]:
    """The file's local ``now`` (naive) and its questions."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    questions = data["questions"]
    for item in questions:
        if not item.get("off_topic") and not item.get("facts"):
            raise ValueError(f"{path}: question {item['q']!r} names no facts and is not off_topic")
    return datetime.fromisoformat(data["now"]), questions


def has_fact(text: str, fact: str) -> bool:
    """``fact`` (``a|b``: either) appears in ``text``, case-insensitive."""
    return any(option.strip().lower() in text.lower() for option in fact.split("|"))


def knowledge_text(answerer: Answerer) -> str:
    """Everything the persona knows, as text: what an answer's numbers may come from."""
    passages = [f"{p.title} {p.text}" for p in answerer.index.passages]
    return "\n".join([*passages, answerer.config.unknown_line, answerer.config.handoff_line])


async def ask_llm(answerer: Answerer, llm: ChatLLM, answer: LLMAnswer) -> tuple[str, float, str | None, bool]:
    """The LLM's whole reply, its duration in seconds, the error if it failed (the reply is then ""), and
    whether the grounding check replaced an invented number with the unknown line."""
    start = time.perf_counter()
    try:
        parts = [delta async for delta in answerer.reply(llm, answer)]
    except LLMError as exc:
        return "", time.perf_counter() - start, str(exc), False
    text = "".join(part for part in parts if isinstance(part, str))
    replaced = any(isinstance(part, UnknownAnswer) for part in parts)
    return text.strip(), time.perf_counter() - start, None, replaced


async def run(
    persona_name: str, questions_path: Path, use_llm: bool, passage_answers: str | None = None
) -> dict[str, Any]:
    persona: Persona = load_persona(persona_name)
    if passage_answers is not None:
        knowledge = persona.knowledge.model_copy(update={"passage_answers": passage_answers})
        persona = persona.model_copy(update={"knowledge": knowledge})
    local_now, questions = load_questions(questions_path)
    now = local_now.replace(tzinfo=ZoneInfo(persona.knowledge.timezone))
    answerer = Answerer(persona, now=lambda: now)
    known = knowledge_text(answerer)
    unknown_line = persona.knowledge.unknown_line.lower()

    answers = [answerer.answer(item["q"]) for item in questions]
    timings = []
    for item in questions:
        for _ in range(TIMING_REPEATS):
            timings.append(answerer.answer(item["q"]).retrieval_ms)

    server: LocalLLMServer | None = None
    llm: ChatLLM | None = None
    needs_llm = use_llm and any(isinstance(a, LLMAnswer) for a in answers)
    if needs_llm:
        if persona.llm.base_url == EMBEDDED:
            server = LocalLLMServer()
            await server.start()
            llm = ChatLLM(persona.llm, server.base_url, api_key=LOCAL_API_KEY, seed=0)
        else:
            llm = ChatLLM(persona.llm, persona.llm.base_url, seed=0)
    rows = []
    llm_seconds = []
    try:
        for item, answer in zip(questions, answers, strict=True):
            text, error, replaced = answer.text, None, False
            if isinstance(answer, LLMAnswer):
                if llm is None:
                    error = "skipped (--no-llm)"
                else:
                    text, seconds, error, replaced = await ask_llm(answerer, llm, answer)
                    llm_seconds.append(seconds)
            off_topic = bool(item.get("off_topic"))
            declined = unknown_line in text.lower()
            right = not off_topic and all(has_fact(text, f) for f in item["facts"])
            invented = (
                sorted(ungrounded_numbers(text, known, item["q"]))
                if answer.kind in {"direct", "llm", "unknown"}
                else []
            )
            rows.append(
                {
                    "q": item["q"],
                    "off_topic": off_topic,
                    "kind": answer.kind,
                    "ok": declined if off_topic else right,
                    "answer": text,
                    "invented": invented,
                    "llm_error": error,
                    "replaced": replaced,
                    **{k: v for k, v in answer.metadata().items() if k not in {"answer", "retrieval_ms"}},
                }
            )
    finally:
        if llm is not None:
            await llm.aclose()
        if server is not None:
            await server.stop()
    return report(persona_name, rows, timings, llm_seconds, use_llm)


def _share(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sum(r["ok"] for r in rows)
    return {"n": len(rows), "ok": ok, "share": round(ok / len(rows), 3) if rows else None}


def report(
    persona: str, rows: list[dict[str, Any]], timings: list[float], llm_seconds: list[float], use_llm: bool
) -> dict[str, Any]:
    """The benchmark's JSON."""
    in_scope = [r for r in rows if not r["off_topic"]]
    off_topic = [r for r in rows if r["off_topic"]]
    kinds = sorted({r["kind"] for r in rows})
    invented = [{"q": r["q"], "numbers": r["invented"]} for r in rows if r["invented"]]
    return {
        "bench": "answers",
        "persona": persona,
        "llm": "embedded SmolLM2-135M-Instruct (seed 0)" if use_llm else "skipped",
        "in_scope_right": _share(in_scope),
        "off_topic_declined": _share(off_topic),
        "invented_numbers": len(invented),
        "invented": invented,
        "llm_replaced_by_unknown_line": sum(r["replaced"] for r in rows),
        "by_kind": {
            kind: {
                "in_scope": _share([r for r in in_scope if r["kind"] == kind]),
                "off_topic": _share([r for r in off_topic if r["kind"] == kind]),
            }
            for kind in kinds
        },
        "answer_kinds": dict(Counter(r["kind"] for r in rows)),
        "llm_errors": sum(r["llm_error"] is not None for r in rows),
        "retrieval_ms": {
            "p50": round(float(np.percentile(timings, 50)), 3),
            "p95": round(float(np.percentile(timings, 95)), 3),
            "max": round(max(timings), 3),
            "calls": len(timings),
        },
        "llm_reply_s": {
            "p50": round(float(np.percentile(llm_seconds, 50)), 2),
            "max": round(max(llm_seconds), 2),
        }
        if llm_seconds
        else None,
        "answers": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persona", required=True, help="persona name or YAML path")
    parser.add_argument("--questions", type=Path, help="default: bench/questions/<persona>.yaml")
    parser.add_argument("--no-llm", action="store_true", help="do not start the LLM (llm answers fail)")
    parser.add_argument("--out", type=Path, help="default: bench/results/answers_<persona>.json")
    parser.add_argument(
        "--passage-answers",
        choices=["auto", "llm", "quote"],
        help="override the persona's knowledge.passage_answers (llm: found passages go to the LLM)",
    )
    args = parser.parse_args()
    name = Path(args.persona).stem
    questions = args.questions or HERE / "questions" / f"{name}.yaml"
    result = asyncio.run(run(args.persona, questions, not args.no_llm, args.passage_answers))
    out = args.out or HERE / "results" / f"answers_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
