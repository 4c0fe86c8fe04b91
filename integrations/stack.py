"""Assemble the whole avatar for one conversation: LLM endpoint (embedded or configured), STT, voice,
renderer, Engine and Session, and take it all down again. Every transport starts here.

The models that several conversations in one process can share (the embedded LLM server, the bundled
Whisper, the joint model, Kokoro, each persona's knowledge index) are owned by one :class:`SharedModels`,
loaded off the event loop the first time a conversation needs them and closed with it; a conversation
opened without one loads and closes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from agent.knowledge import Answerer
from agent.llm import ChatLLM
from agent.persona import EMBEDDED, Persona
from agent.session import Session
from agent.stt import STT, WhisperSTT, make_stt
from avatar_core.cascade import CascadeVoice
from avatar_core.config import AppSettings
from avatar_core.engine import Engine, RealClock, VirtualClock, Voice
from avatar_core.joint import JointVoice
from avatar_core.model.inference import JointModel, ModelMissingError
from avatar_core.render import close_renderer, make_renderer
from avatar_core.render.base import Renderer
from integrations.llm.local_server import LOCAL_API_KEY, LocalLLMServer

if TYPE_CHECKING:
    from avatar_core.tts.kokoro import KokoroTTS

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """The avatar cannot be assembled from this persona on this machine."""


@dataclass
class AvatarStack:
    """The running parts of one avatar."""

    persona: Persona
    engine: Engine
    session: Session
    stt: STT
    llm: ChatLLM
    server: LocalLLMServer | None


def load_joint_model(settings: AppSettings) -> JointModel | None:
    """The joint model, or None without a checkpoint (blocking: loads it)."""
    try:
        return JointModel.from_settings(settings)
    except ModelMissingError as exc:
        log.warning("%s; speaking with Kokoro and the procedural teacher instead", exc)
        return None


_LOAD = object()  # build_voice: load the joint model


def build_voice(
    persona: Persona,
    settings: AppSettings,
    mode: Literal["joint", "cascade"] | None = None,
    model: JointModel | object | None = _LOAD,
    *,
    kokoro: Callable[[], KokoroTTS] | None = None,
) -> tuple[Voice, JointModel | None]:
    """The persona's voice and the audio-driven motion model (blocking: loads models).

    joint: the AV-Flow checkpoint speaks and moves the face. cascade: Kokoro speaks; the face follows the
    audio through the checkpoint's audio-driven mode. Without a checkpoint both fall back to Kokoro with
    the procedural teacher, and say so. ``model``: a joint model already loaded (or None: there is none).
    ``kokoro``: gives the Kokoro to speak with if a cascade voice is built (a shared one); without it the
    voice loads its own.
    """
    mode = mode or persona.voice.mode
    fps = persona.appearance.video.fps
    if model is _LOAD:
        model = load_joint_model(settings)
    assert model is None or isinstance(model, JointModel)
    if mode == "joint" and model is not None:
        # joint even when the mode is overridden: an unknown speaker is then an error, not a silent swap
        return JointVoice(persona.voice.model_copy(update={"mode": "joint"}), fps, model), model
    tts = kokoro() if kokoro is not None else None
    return CascadeVoice(
        persona.voice, persona.behaviour, fps, settings.cache_dir, driver=model, tts=tts
    ), model


class SharedModels:
    """The models several conversations in one process share, each loaded once, on first need: the
    embedded LLM servers (one per conversation at once, up to ``llm_servers`` if set; or one given,
    which stays the caller's), the bundled Whisper (one per STT configuration; it serialises its calls),
    the joint model (it serialises its inferences), Kokoro for cascade voices (one ONNX session; it
    serialises its runs) and each persona's :class:`Answerer` (its SQLite FTS5 index takes one lock per
    query).

    Conversations on different threads, each with its own event loop (a LiveKit worker's rooms), may
    share one: the models are guarded by a thread lock and loaded off every event loop. The embedded
    LLM servers are started by one loop (the first to ask) and used by the others through their URLs.
    """

    def __init__(
        self, settings: AppSettings | None = None, *, llm_server: LocalLLMServer | None = None
    ) -> None:
        self.settings = settings or AppSettings()
        self._server = llm_server
        self._own_server = False
        self._stt: dict[str, WhisperSTT] = {}
        self._model: JointModel | object | None = _LOAD
        self._kokoro: KokoroTTS | None = None
        self._answerers: dict[str, Answerer] = {}
        self._loading = threading.Lock()  # the models: any thread
        self._loading_kokoro = threading.Lock()  # apart, so Kokoro loads while the joint model does
        self._loading_answerer = threading.Lock()
        self._starting: asyncio.Lock | None = None  # the LLM server: the loop that starts it
        self._extra: list[LocalLLMServer] = []  # more servers, for conversations at the same time
        self._users: dict[LocalLLMServer, int] = {}  # server -> conversations using it
        self._choosing = threading.Lock()  # the counts: conversations on any thread
        self._server_loop: asyncio.AbstractEventLoop | None = None  # the loop the servers belong to

    async def llm_server(self, persona: Persona) -> LocalLLMServer | None:
        """The (first) embedded LLM server if ``persona`` uses it (started now the first time)."""
        if persona.llm.base_url != EMBEDDED:
            return None
        if self._server is not None:  # running: no lock, so any thread's loop may ask
            return self._server
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._server is None:
                self._server, self._own_server = await self._start_server(), True
                self._server_loop = asyncio.get_running_loop()
        return self._server

    async def conversation_server(self, persona: Persona) -> LocalLLMServer | None:
        """The embedded LLM server one conversation of ``persona`` uses, until :meth:`release`: an idle one,
        else a new one unless ``llm_servers`` run already (a server answers one request at a
        time, so conversations on one server wait for each other's replies), else the least busy.

        Servers are started only on the event loop that started the first (their processes belong to
        it); a conversation on another thread's loop chooses among those running, which that loop may
        start ahead (:meth:`start_llm_servers`: a LiveKit worker's rooms run on their own threads)."""
        first = await self.llm_server(persona)
        if first is None or not self._own_server:
            return first  # none, or given: the caller's single server
        if asyncio.get_running_loop() is self._server_loop:
            assert self._starting is not None
            async with self._starting:
                with self._choosing:
                    servers = self.servers
                    all_busy = all(self._users.get(s, 0) > 0 for s in servers)
                if all_busy and self._room_for_server(len(servers)):
                    self._extra.append(await self._start_server())
        with self._choosing:  # conversations on several threads
            chosen = min(self.servers, key=lambda s: self._users.get(s, 0))  # the first idle one
            self._users[chosen] = self._users.get(chosen, 0) + 1
        return chosen

    async def start_llm_servers(self, persona: Persona, count: int) -> tuple[LocalLLMServer, ...]:
        """Start embedded servers now, on this loop, until ``count`` run (at most ``llm_servers`` if set), for
        conversations on other threads' loops, which only choose among running servers. Returns them
        all (none if ``persona`` does not use the embedded model)."""
        first = await self.llm_server(persona)
        if first is None or not self._own_server:
            return () if first is None else (first,)
        if asyncio.get_running_loop() is not self._server_loop:
            raise RuntimeError("LLM servers start on the event loop that started the first one")
        assert self._starting is not None
        async with self._starting:
            while len(self.servers) < count and self._room_for_server(len(self.servers)):
                self._extra.append(await self._start_server())
        return self.servers

    def release(self, server: LocalLLMServer) -> None:
        """A conversation that used ``server`` (from :meth:`conversation_server`) has ended."""
        with self._choosing:
            if self._users.get(server, 0) > 0:
                self._users[server] -= 1

    @property
    def servers(self) -> tuple[LocalLLMServer, ...]:
        """Every embedded LLM server running for this process's conversations."""
        return () if self._server is None else (self._server, *self._extra)

    def _room_for_server(self, running: int) -> bool:
        """Whether another embedded server may start while ``running`` run (``DYAD_LLM_SERVERS``)."""
        cap = self.settings.llm_servers
        return cap is None or running < cap

    async def _start_server(self) -> LocalLLMServer:
        server = LocalLLMServer(n_threads=self.settings.llm_threads)
        await server.start()
        return server

    async def whisper(self, persona: Persona) -> WhisperSTT | None:
        """The bundled Whisper for ``persona``'s STT settings (None for a remote STT); it loads in its
        own thread."""
        return self.whisper_blocking(persona)

    def whisper_blocking(self, persona: Persona) -> WhisperSTT | None:
        """:meth:`whisper` for any thread (creating it only starts its load, in its own thread)."""
        config = persona.stt
        if config.backend != "whisper":
            return None
        key = config.model_dump_json(include={"model", "language", "beam_size"})
        with self._loading:
            if key not in self._stt:
                stt = make_stt(config, workers=self.settings.stt_workers)
                assert isinstance(stt, WhisperSTT)
                self._stt[key] = stt
            return self._stt[key]

    @property
    def server(self) -> LocalLLMServer | None:
        """The embedded LLM server, once started (or given)."""
        return self._server

    async def joint_model(self) -> JointModel | None:
        """The joint model (None without a checkpoint); loaded off the event loop the first time."""
        if self._model is _LOAD:
            return await asyncio.to_thread(self.joint_model_blocking)
        assert self._model is None or isinstance(self._model, JointModel)
        return self._model

    def joint_model_blocking(self) -> JointModel | None:
        """:meth:`joint_model` for any thread but an event loop's (it may load the model)."""
        with self._loading:
            if self._model is _LOAD:
                self._model = load_joint_model(self.settings)
        assert self._model is None or isinstance(self._model, JointModel)
        return self._model

    def kokoro_blocking(self) -> KokoroTTS:
        """Kokoro, loaded the first time (blocking: call it off the event loop)."""
        from avatar_core.tts.kokoro import KokoroTTS

        with self._loading_kokoro:
            if self._kokoro is None:
                self._kokoro = KokoroTTS(self.settings.cache_dir)
            return self._kokoro

    async def answerer(self, persona: Persona) -> Answerer:
        """``persona``'s knowledge and tools (:class:`Answerer`), its index built off the event loop
        the first time; sessions of the same persona get the same one."""
        key = persona.model_dump_json()
        found = self._answerers.get(key)
        return found if found is not None else await asyncio.to_thread(self.answerer_blocking, persona)

    def answerer_blocking(self, persona: Persona) -> Answerer:
        """:meth:`answerer` for any thread but an event loop's (it may build the index)."""
        key = persona.model_dump_json()
        with self._loading_answerer:
            if key not in self._answerers:
                self._answerers[key] = Answerer(persona)
            return self._answerers[key]

    async def aclose(self) -> None:
        """Stop what this object started: the LLM server, the Whisper models."""
        with self._loading:
            stts, self._stt = list(self._stt.values()), {}
        for stt in stts:
            await stt.aclose()
        server, self._server = self._server, None
        extra, self._extra = self._extra, []
        for started in extra:
            await started.stop()
        if server is not None and self._own_server:
            await server.stop()


@dataclass
class LoadedParts:
    """Models already loaded for a persona (a prewarmed process), used instead of loading them again."""

    voice: Voice
    model: JointModel | None
    renderer: Renderer
    stt: STT | None = None


@contextlib.asynccontextmanager
async def open_stack(
    persona: Persona,
    settings: AppSettings | None = None,
    *,
    virtual: bool = False,
    seed: int = 0,
    server: LocalLLMServer | None = None,
    loaded: LoadedParts | None = None,
    models: SharedModels | None = None,
) -> AsyncIterator[AvatarStack]:
    """Build the avatar; ``virtual`` runs it on a virtual clock (offline files).

    ``models``: the process's shared models (LLM server, Whisper, joint model), used and left open;
    without it this conversation loads its own and closes them on exit. ``server``: a running embedded
    LLM server to use. ``loaded`` parts (the persona's, loaded ahead of time for one conversation) are
    used instead of loading the voice, model, renderer and STT.
    """
    settings = settings or AppSettings()
    if persona.voice.mode == "cascade" and persona.voice.cascade_tts == "openai":
        raise StackError("voice.cascade_tts 'openai' is not available yet; use 'kokoro'")
    own = SharedModels(settings, llm_server=server) if models is None else None
    shared = own or models
    assert shared is not None
    try:
        api_key = None
        base_url = persona.llm.base_url
        embedded: LocalLLMServer | None = None
        if base_url == EMBEDDED:
            embedded = server or await shared.conversation_server(persona)
            assert embedded is not None
            base_url, api_key = embedded.base_url, LOCAL_API_KEY
        whisper = await shared.whisper(persona) if loaded is None or loaded.stt is None else None
        stt = (
            loaded.stt if loaded is not None and loaded.stt is not None else whisper or make_stt(persona.stt)
        )
        # The embedded server's KV cache is warmed between turns (ChatLLM.warm); a remote API's is not.
        llm = ChatLLM(
            persona.llm, base_url, api_key, seed=seed, warm_prompts=persona.llm.base_url == EMBEDDED
        )
        fps = persona.appearance.video.fps
        if loaded is not None:
            voice, driver, renderer = loaded.voice, loaded.model, loaded.renderer
        else:
            model = _LOAD if own is not None else await shared.joint_model()  # own: load alongside
            (voice, driver), renderer = await asyncio.gather(
                asyncio.to_thread(build_voice, persona, settings, None, model, kokoro=shared.kokoro_blocking),
                asyncio.to_thread(
                    make_renderer, persona.appearance, process=settings.render_process and not virtual
                ),
            )
        clock = VirtualClock() if virtual else RealClock()
        engine = Engine(
            voice,
            renderer,
            persona.behaviour,
            fps=fps,
            clock=clock,
            seed=seed,
            driver=driver,
            listener=driver,
        )
        session = Session(persona, engine, stt, llm, answerer=await shared.answerer(persona))
        try:
            yield AvatarStack(persona, engine, session, stt, llm, embedded or shared.server)
        finally:
            await session.aclose()
            await engine.aclose()
            if loaded is None:
                await asyncio.to_thread(close_renderer, renderer)
            await llm.aclose()
            if stt is not whisper:  # prewarmed or remote: this conversation's own
                await stt.aclose()
            if embedded is not None and server is None:
                shared.release(embedded)
    finally:
        if own is not None:
            await own.aclose()
