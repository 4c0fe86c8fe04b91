"""``dyad livekit worker``: a livekit-agents worker that a LiveKit server dispatches rooms to.

Start as many as you like, on as many machines: each registers with the server, which sends every new
room (or, with ``--agent-name``, every explicit dispatch) to the least-loaded worker. A worker reports
its load as ``sessions / max_sessions`` and stops taking rooms when full; a worker that dies takes only
its own rooms with it.

By default (``executor="thread"``) a worker runs its rooms as threads of its own process, each with its
own event loop, sharing one :class:`~integrations.stack.SharedModels` (Whisper, the joint model) loaded
once per process, off every event loop; the idle threads livekit-agents keeps ready warm those shared
models. With ``executor="process"`` each room gets its own process (isolated, but every room loads its
own models), prewarmed with the default persona's parts. When the default persona uses the embedded
LLM, the worker starts up to ``DYAD_LLM_SERVERS`` servers (no more than ``max_sessions``) before taking
rooms, since a server answers one request at a time: rooms as threads each take the least busy one
(:meth:`~integrations.stack.SharedModels.conversation_server`); room processes, which cannot see each
other's, take the one their job id hashes to.

The persona of a room comes from the dispatch metadata, else the room metadata, else the worker's
default: either a bare persona name (``library_receptionist``) or JSON ``{"persona": "NAME"}``. Only
names of installed personas are accepted, never paths or inline configs: metadata is set by whoever
creates rooms, and a persona names endpoints and environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
import threading
import time
import zlib
from dataclasses import dataclass, replace

from livekit.agents import (
    AgentServer,
    AutoSubscribe,
    JobContext,
    JobExecutorType,
    JobProcess,
    JobRequest,
    WorkerPermissions,
)
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from agent.persona import EMBEDDED, Persona, PersonaError, available_personas, load_persona
from avatar_core.config import AppSettings
from integrations.lifecycle import on_stop_signals
from integrations.livekit.attendee import AttendPolicy
from integrations.livekit.prewarm import Prewarmed, prewarm_parts, stack_from
from integrations.livekit.room import RoomAvatar
from integrations.llm.local_server import LocalLLMServer
from integrations.stack import SharedModels, open_stack

log = logging.getLogger(__name__)

LOAD_FULL = 0.999  # load = sessions / max_sessions: available while below max_sessions
PREWARM_TIMEOUT_S = 180.0  # loading every model on a busy 2-core machine takes a while
SHUTDOWN_TIMEOUT_S = 40.0  # a room's process: close the session, publish the last transcripts
MEMORY_WARN_MB = 1500  # the budget of one live session (docs/design.md)
DRAIN_TIMEOUT_S = 1800
PREWARMED = "dyad_prewarmed"  # JobProcess.userdata key of the loaded parts
EXECUTORS = {"thread": JobExecutorType.THREAD, "process": JobExecutorType.PROCESS}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs; pickled into every room process, so plain values only."""

    persona: str = "default"  # the default persona (name or path, chosen by the operator)
    max_sessions: int = 1
    idle_processes: int = 1
    attend: str = "first"
    agent_name: str = ""  # set: explicit dispatch only
    llm_ports: tuple[int, ...] = ()  # the worker's embedded LLM servers on 127.0.0.1
    leave_alone_after_s: float = 20.0  # the room process ends once no human is left for this long
    executor: str = "thread"  # "thread": rooms share this process's models; "process": one each


# ---------------------------------------------------------------------------------------------------
# Personas from metadata
# ---------------------------------------------------------------------------------------------------


def persona_from_metadata(metadata: str) -> str | None:
    """The persona name a dispatch or room metadata string asks for, or None."""
    text = metadata.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        name = data.get("persona") if isinstance(data, dict) else None
        return name.strip() if isinstance(name, str) and _NAME.match(name.strip()) else None
    return text if _NAME.match(text) else None


def choose_persona(job: agent_proto.Job, default: str, settings: AppSettings | None = None) -> str:
    """Dispatch metadata, else room metadata, else ``default``; unknown names fall back with a warning."""
    known = available_personas(settings or AppSettings())
    for source, metadata in (("dispatch", job.metadata), ("room", job.room.metadata)):
        name = persona_from_metadata(metadata)
        if name is None:
            continue
        if name in known:
            log.info("room %s: persona %r from the %s metadata", job.room.name, name, source)
            return name
        log.warning("room %s: the %s metadata asks for unknown persona %r", job.room.name, source, name)
    return default


# ---------------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------------


def room_llm_port(ports: tuple[int, ...], job_id: str) -> int:
    """The worker's LLM server a room process uses: room processes cannot see which servers the others
    use, so the job id spreads them (stable for a job, even when its process restarts)."""
    return ports[zlib.crc32(job_id.encode()) % len(ports)]


def session_load(max_sessions: int, server: AgentServer) -> float:
    """The load LiveKit balances on: the share of this worker's session slots in use."""
    return min(1.0, len(server.active_jobs) / max(1, max_sessions))


# ---------------------------------------------------------------------------------------------------
# The room process
# ---------------------------------------------------------------------------------------------------


_process_models: SharedModels | None = None
_process_models_lock = threading.Lock()


def process_models() -> SharedModels:
    """The models every room of this process shares (created on first use, from any thread)."""
    global _process_models
    with _process_models_lock:
        if _process_models is None:
            _process_models = SharedModels()
        return _process_models


async def close_process_models() -> None:
    """Close the process's shared models (the worker is stopping)."""
    global _process_models
    with _process_models_lock:
        models, _process_models = _process_models, None
    if models is not None:
        await models.aclose()


def prewarm(config: WorkerConfig, proc: JobProcess) -> None:
    """Before a room arrives (blocking; livekit-agents runs it outside any event loop). Rooms as
    threads: load the process's shared models for the default persona (once per process; later calls
    find them loaded). Rooms as processes: load the default persona's parts in this fresh process; the
    room uses them if it asks for that persona (see :mod:`integrations.livekit.prewarm`)."""
    settings = AppSettings()
    persona = load_persona(config.persona, settings=settings)
    if proc.executor_type == JobExecutorType.THREAD:
        started = time.perf_counter()
        models = process_models()
        stt = models.whisper_blocking(persona)
        if stt is not None:
            asyncio.run(stt.warmup())
        if models.joint_model_blocking() is None or persona.voice.mode == "cascade":
            models.kokoro_blocking()
        models.answerer_blocking(persona)
        log.info("shared models ready for %s in %.1f s", config.persona, time.perf_counter() - started)
        return
    parts = prewarm_parts(persona, settings)
    proc.userdata[PREWARMED] = parts
    log.info("room process prewarmed with %s in %.1f s", config.persona, parts.seconds)


async def accept(config: WorkerConfig, request: JobRequest) -> None:
    """Take the room as the persona it asks for: the participant's identity, name, metadata and
    attributes come from that persona."""
    try:
        name = await asyncio.to_thread(choose_persona, request.job, config.persona)
        persona = await asyncio.to_thread(load_persona, name)
    except PersonaError as error:
        log.error("room %s: cannot load its persona: %s", request.room.name, error)
        await request.reject(terminate=False)
        return
    identity = persona.identity
    await request.accept(
        identity=identity.livekit_identity,
        name=identity.livekit_name or identity.display_name,
        metadata=identity.livekit_metadata,
        attributes=dict(identity.livekit_attributes),
    )


async def entrypoint(config: WorkerConfig, ctx: JobContext) -> None:
    """One room: build the avatar, connect, serve until the room ends or is left empty."""
    name = await asyncio.to_thread(choose_persona, ctx.job, config.persona)
    persona: Persona = await asyncio.to_thread(load_persona, name)
    owned = contextlib.AsyncExitStack()
    async with owned:
        threads = ctx.proc.executor_type == JobExecutorType.THREAD
        shared = await room_llm_server(config, persona, threads, ctx.job.id, owned)
        await _serve_room(config, ctx, name, persona, shared)
    ctx.shutdown("the avatar left the room")


async def room_llm_server(
    config: WorkerConfig, persona: Persona, threads: bool, job_id: str, owned: contextlib.AsyncExitStack
) -> LocalLLMServer | None:
    """The embedded LLM server a room is given. None: its persona uses another LLM, or it is a thread of a
    worker that started servers (it chooses among them itself, :func:`~integrations.stack.open_stack`). A
    room process takes the worker's server its job id hashes to (only its URL is used). When the worker
    started none (its default persona uses another LLM), the room starts its own, on its own event loop,
    stopped with ``owned``: a server started by a room's loop must not outlive the room."""
    if persona.llm.base_url != EMBEDDED:
        return None
    if config.llm_ports:
        return None if threads else LocalLLMServer(port=room_llm_port(config.llm_ports, job_id))
    return await owned.enter_async_context(LocalLLMServer(n_threads=AppSettings().llm_threads))


async def _serve_room(
    config: WorkerConfig, ctx: JobContext, name: str, persona: Persona, shared: LocalLLMServer | None
) -> None:
    """Build the room's avatar (from the prewarmed parts if they are its persona's); serve until it leaves."""
    parts: Prewarmed | None = ctx.proc.userdata.pop(PREWARMED, None)
    if parts is not None and parts.persona != persona:
        log.info("room %s asks for %s: its models load now", ctx.room.name, name)
        if parts.stt is not None:
            await parts.stt.aclose()
        parts = None
    if parts is not None:
        log.info("room %s: %s, with the models this process prewarmed", ctx.room.name, name)
        building = stack_from(parts, server=shared)
    else:
        building = open_stack(persona, AppSettings(), server=shared, models=process_models())
    async with building as stack:
        await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_ALL)
        policy = AttendPolicy.parse(config.attend)
        avatar = RoomAvatar(ctx.room, stack, policy=policy, leave_alone_after_s=config.leave_alone_after_s)

        async def stop(reason: str) -> None:
            avatar.stop()

        ctx.add_shutdown_callback(stop)
        await avatar.run()


# ---------------------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------------------


def build_server(config: WorkerConfig, *, url: str | None = None, health_port: int = 8081) -> AgentServer:
    """The livekit-agents server: prewarmed room processes, session-slot load, least-privilege
    permissions. URL, key and secret come from ``LIVEKIT_URL``, ``LIVEKIT_API_KEY`` and
    ``LIVEKIT_API_SECRET``."""
    if config.max_sessions < 1:
        raise ValueError(f"max_sessions must be at least 1, got {config.max_sessions}")
    if config.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, got {config.executor!r}")
    AttendPolicy.parse(config.attend)
    server = AgentServer(
        ws_url=url,
        port=health_port,
        job_executor_type=EXECUTORS[config.executor],
        setup_fnc=functools.partial(prewarm, config),
        load_fnc=functools.partial(session_load, config.max_sessions),
        load_threshold=LOAD_FULL,
        num_idle_processes=config.idle_processes,
        initialize_process_timeout=PREWARM_TIMEOUT_S,
        shutdown_process_timeout=SHUTDOWN_TIMEOUT_S,
        job_memory_warn_mb=MEMORY_WARN_MB,
        drain_timeout=DRAIN_TIMEOUT_S,
        permissions=WorkerPermissions(
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
            can_update_metadata=True,  # lk.agent.state
            can_publish_sources=[models.TrackSource.MICROPHONE, models.TrackSource.CAMERA],
        ),
    )
    server.rtc_session(
        functools.partial(entrypoint, config),
        agent_name=config.agent_name,
        on_request=functools.partial(accept, config),
    )
    return server


async def run_worker(
    config: WorkerConfig, *, url: str | None = None, health_port: int = 8081, dev: bool = False
) -> None:
    """Run a worker until SIGINT/SIGTERM; then stop taking rooms, let the live ones finish (not in
    ``dev`` mode) and shut down. Starts the embedded LLM servers first when the default persona uses them."""
    persona = await asyncio.to_thread(load_persona, config.persona)
    models = process_models()  # the LLM servers; rooms as threads share its other models too
    try:
        servers = await models.start_llm_servers(persona, config.max_sessions)
        config = replace(config, llm_ports=tuple(s.port for s in servers if s.port is not None))
        server = build_server(config, url=url, health_port=health_port)
        stop = asyncio.Event()
        with on_stop_signals(stop.set):
            running = asyncio.ensure_future(server.run(devmode=dev))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if running.done():
                running.result()  # raises why the worker could not run (e.g. it cannot reach the server)
                return
            print("dyad: stopping the worker; live rooms finish first (Ctrl+C again to force)", flush=True)
            forced = asyncio.Event()
            with on_stop_signals(forced.set):
                if not dev:
                    await _drain(server, forced)
                await server.aclose()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await running
    finally:
        await close_process_models()


async def _drain(server: AgentServer, forced: asyncio.Event) -> None:
    """Let the live rooms finish, unless ``forced`` is set first."""
    draining = asyncio.ensure_future(server.drain())
    waiting = asyncio.ensure_future(forced.wait())
    await asyncio.wait({draining, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not draining.done():
        print("dyad: forced: closing the live rooms now", flush=True)
        draining.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await draining
