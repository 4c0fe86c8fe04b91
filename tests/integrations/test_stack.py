"""Sessions opened on one :class:`~integrations.stack.SharedModels` share its models: one Kokoro for
their cascade voices, one Answerer (knowledge index) per persona, one Whisper; and the shared ones are
safe to use from several threads at once (a LiveKit worker's rooms run on threads)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agent.persona import Persona, load_persona
from avatar_core.cascade import CascadeVoice
from avatar_core.render.process import RenderProcess
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
            renderers = [s.engine.renderer for s in (a, b, c)]
            assert all(isinstance(r, RenderProcess) for r in renderers)  # live: each draws in a child
        assert all(r._process is None for r in renderers if isinstance(r, RenderProcess))  # stopped
        async with open_stack(library, models=models, virtual=True) as offline:
            assert not isinstance(offline.engine.renderer, RenderProcess)  # files: drawn in-process
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


async def test_conversations_at_the_same_time_get_their_own_llm_servers_up_to_the_setting() -> None:
    """A server answers one request at a time: conversations at once get one each, up to
    ``DYAD_LLM_SERVERS``; past it they share the least busy, and an ended conversation frees its own."""
    from avatar_core.config import AppSettings

    default = load_persona("default")
    models = SharedModels(AppSettings(llm_servers=2))
    try:
        a = await models.conversation_server(default)
        b = await models.conversation_server(default)
        assert a is not None and b is not None and a is not b and a.base_url != b.base_url
        c = await models.conversation_server(default)
        assert c in (a, b) and len(models.servers) == 2  # no more than the setting
        models.release(a)
        models.release(c)
        assert await models.conversation_server(default) in (a, c)  # the one now idle, not b
        servers = models.servers
    finally:
        await models.aclose()
    assert all(s._process is None or s._process.returncode is not None for s in servers)  # all stopped


async def test_without_a_cap_every_conversation_at_once_gets_its_own_llm_server() -> None:
    from avatar_core.config import AppSettings

    default = load_persona("default")
    models = SharedModels(AppSettings(llm_servers=None))
    try:
        chosen = [await models.conversation_server(default) for _ in range(3)]
        assert len({id(server) for server in chosen}) == 3 and len(models.servers) == 3
    finally:
        await models.aclose()


async def test_one_llm_server_when_the_setting_says_so() -> None:
    from avatar_core.config import AppSettings

    default = load_persona("default")
    models = SharedModels(AppSettings(llm_servers=1))
    try:
        a = await models.conversation_server(default)
        assert await models.conversation_server(default) is a
        assert await models.conversation_server(persona()) is None  # a persona on another LLM
    finally:
        await models.aclose()


async def test_a_conversation_on_another_threads_loop_shares_the_running_servers() -> None:
    """Server processes belong to the loop that started them: a conversation on another thread's event
    loop chooses among the running servers and starts none."""
    from avatar_core.config import AppSettings

    default = load_persona("default")
    models = SharedModels(AppSettings(llm_servers=2))
    try:
        a = await models.conversation_server(default)
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(asyncio.run, models.conversation_server(default)).result()
        assert other is a and models.servers == (a,)
    finally:
        await models.aclose()


async def test_servers_started_ahead_serve_conversations_on_other_threads_loops() -> None:
    """A LiveKit worker starts its servers before rooms arrive (``start_llm_servers``); rooms on their
    own threads' loops then get one each instead of queueing on one."""
    from avatar_core.config import AppSettings

    default = load_persona("default")
    models = SharedModels(AppSettings(llm_servers=2))
    try:
        servers = await models.start_llm_servers(default, 3)
        assert len(servers) == 2 and models.servers == servers  # no more than the setting
        with ThreadPoolExecutor(1) as pool:
            a = pool.submit(asyncio.run, models.conversation_server(default)).result()
            b = pool.submit(asyncio.run, models.conversation_server(default)).result()
            with pytest.raises(RuntimeError, match="event loop that started"):
                pool.submit(asyncio.run, models.start_llm_servers(default, 2)).result()
        assert {a, b} == set(servers)
        assert await models.start_llm_servers(default, 1) == servers  # running servers stay
        assert await models.start_llm_servers(persona(), 2) == ()  # a persona on another LLM
    finally:
        await models.aclose()
