"""Sessions opened on one :class:`~integrations.stack.SharedModels` share its models: one Kokoro for
their cascade voices, one Answerer (knowledge index) per persona, one Whisper; and the shared ones are
safe to use from several threads at once (a LiveKit worker's rooms run on threads)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from agent.persona import Persona, load_persona
from avatar_core.cascade import CascadeVoice
from integrations.stack import SharedModels, open_stack

QUESTIONS = ["When do you open on Saturday?", "How do I get a library card?", "Can I print here?"]


def persona(**llm: str) -> Persona:
    """The library receptionist (in cascade mode, knowledge files) on an LLM that is never called."""
    data = load_persona("library_receptionist").model_dump()
    data["voice"]["mode"] = "cascade"
    data["llm"].update({"base_url": "http://127.0.0.1:9/v1", "greeting": "", **llm})
    data["appearance"]["video"].update({"width": 128, "height": 128})
    return Persona.model_validate(data)


async def test_two_sessions_share_kokoro_answerer_and_whisper() -> None:
    models = SharedModels()
    library, other = persona(), persona(system_prompt="You are Robin's colleague at the front desk.")
    try:
        async with (
            open_stack(library, models=models, seed=0) as a,
            open_stack(library, models=models, seed=1) as b,
            open_stack(other, models=models) as c,
        ):
            voices = [s.engine.voice for s in (a, b, c)]
            assert all(isinstance(v, CascadeVoice) for v in voices)
            kokoro = models.kokoro_blocking()
            assert all(v.tts is kokoro for v in voices if isinstance(v, CascadeVoice))  # one Kokoro
            assert a.session.answerer is b.session.answerer  # one index per persona...
            assert c.session.answerer is not a.session.answerer  # ...and a persona of its own
            assert a.stt is b.stt is c.stt
            assert a.engine.voice is not b.engine.voice  # each session speaks for itself
    finally:
        await models.aclose()


async def test_shared_kokoro_and_answerer_from_several_threads() -> None:
    """Two threads using the shared Kokoro and Answerer at once get what one thread gets alone."""
    models = SharedModels()
    library = persona()
    answerer = await models.answerer(library)
    kokoro = await asyncio.to_thread(models.kokoro_blocking)

    def work(text: str) -> tuple[str, int]:
        audio = kokoro.synthesize(text, "jm_kumo")  # (S,)
        return answerer.answer(text).text, int(np.round(np.abs(audio).sum()))

    alone = [work(q) for q in QUESTIONS]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(work, QUESTIONS))
    assert together == alone
    assert await asyncio.to_thread(models.answerer_blocking, library) is answerer
    await models.aclose()


async def test_the_embedded_llm_server_computes_with_the_settings_threads() -> None:
    """``DYAD_LLM_THREADS`` reaches the shared embedded server (generation and prompt evaluation)."""
    from avatar_core.config import AppSettings

    models = SharedModels(AppSettings(llm_threads=2))
    try:
        server = await models.llm_server(load_persona("default"))
        assert server is not None and server.n_threads == server.n_threads_batch == 2
        assert server._process is not None and server._process.returncode is None
    finally:
        await models.aclose()
