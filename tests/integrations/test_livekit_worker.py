"""The agent worker: persona from dispatch/room metadata, accepting a room as that persona, load
reporting, a picklable setup for livekit-agents' process pool, and a real prewarm of a room process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pickle
import threading
from typing import cast

import pytest
from livekit.agents import AgentServer, JobProcess, JobRequest
from livekit.agents.job import JobAcceptArguments, JobExecutorType
from livekit.protocol import agent as agent_proto
from livekit.protocol import models

from agent.persona import load_persona
from integrations import stack as stack_module
from integrations.livekit.prewarm import Prewarmed, stack_from
from integrations.livekit.worker import (
    LOAD_FULL,
    PREWARMED,
    WorkerConfig,
    accept,
    build_server,
    choose_persona,
    close_process_models,
    persona_from_metadata,
    prewarm,
    process_models,
    room_llm_port,
    room_llm_server,
    session_load,
)
from integrations.llm.local_server import LocalLLMServer
from integrations.stack import AvatarStack, open_stack


def job(dispatch: str = "", room: str = "") -> agent_proto.Job:
    return agent_proto.Job(
        id="AJ_test", metadata=dispatch, room=models.Room(sid="RM_test", name="lobby", metadata=room)
    )


def test_persona_names_from_metadata() -> None:
    assert persona_from_metadata("") is None
    assert persona_from_metadata("library_receptionist") == "library_receptionist"
    assert persona_from_metadata('{"persona": "clinic_checkin", "other": 1}') == "clinic_checkin"
    assert persona_from_metadata('{"topic": "books"}') is None
    assert persona_from_metadata("{not json") is None
    # never a path or anything that is not a plain name
    assert persona_from_metadata("/etc/passwd") is None
    assert persona_from_metadata('{"persona": "../../secret.yaml"}') is None
    assert persona_from_metadata("hello there") is None


def test_dispatch_metadata_wins_then_room_then_default() -> None:
    assert choose_persona(job("library_receptionist", "clinic_checkin"), "default") == "library_receptionist"
    assert choose_persona(job("", '{"persona": "clinic_checkin"}'), "default") == "clinic_checkin"
    assert choose_persona(job("nobody_by_that_name", "clinic_checkin"), "default") == "clinic_checkin"
    assert choose_persona(job("", "free text about the room"), "default") == "default"


async def test_a_room_is_accepted_as_its_persona() -> None:
    accepted: list[JobAcceptArguments] = []
    rejected: list[bool] = []

    async def on_accept(args: JobAcceptArguments) -> None:
        accepted.append(args)

    async def on_reject(terminate: bool) -> None:
        rejected.append(terminate)

    request = JobRequest(job=job("library_receptionist"), on_reject=on_reject, on_accept=on_accept)
    await accept(WorkerConfig(), request)
    (args,) = accepted
    assert args.identity == "library-desk-robin" and args.name == "Robin"
    assert args.metadata == '{"site": "central-library", "desk": "ground-floor"}'
    assert args.attributes == {"role": "receptionist", "site": "central-library"}

    broken = JobRequest(job=job(), on_reject=on_reject, on_accept=on_accept)
    await accept(WorkerConfig(persona="tests/data/personas/broken/unknown_llm_field.yaml"), broken)
    assert rejected == [False] and len(accepted) == 1  # another worker may take it


class Busy:
    """What session_load reads of an AgentServer."""

    def __init__(self, jobs: int) -> None:
        self.active_jobs = [object()] * jobs


def test_load_is_the_share_of_session_slots_in_use() -> None:
    load = functools.partial(session_load, 3)
    assert [load(cast(AgentServer, Busy(n))) for n in range(5)] == pytest.approx([0, 1 / 3, 2 / 3, 1, 1])
    assert [load(cast(AgentServer, Busy(n))) < LOAD_FULL for n in range(4)] == [True, True, True, False]


def test_server_setup_survives_the_process_pool() -> None:
    config = WorkerConfig(persona="library_receptionist", max_sessions=2, agent_name="dyad")
    server = build_server(config)
    # livekit-agents pickles these into each room process (forkserver on Linux)
    for fn in (server.setup_fnc, server._entrypoint_fnc):
        restored = pickle.loads(pickle.dumps(fn))
        assert isinstance(restored, functools.partial) and restored.args == (config,)
    assert server.load_fnc is not None and server._agent_name == "dyad"
    permissions = server._permissions
    assert permissions.can_publish_sources == [models.TrackSource.MICROPHONE, models.TrackSource.CAMERA]
    assert permissions.can_update_metadata and not permissions.hidden
    with pytest.raises(ValueError, match="max_sessions"):
        build_server(WorkerConfig(max_sessions=0))
    with pytest.raises(ValueError, match="identity:NAME"):
        build_server(WorkerConfig(attend="loudest"))


async def test_a_prewarmed_process_builds_its_room_from_what_it_loaded() -> None:
    from avatar_core.listening_features import _shape_predictor

    proc = JobProcess(executor_type=JobExecutorType.PROCESS, user_arguments=None, http_proxy=None)
    _shape_predictor.cache_clear()
    await asyncio.to_thread(prewarm, WorkerConfig(), proc)  # livekit-agents runs it before any loop
    parts = proc.userdata[PREWARMED]
    assert isinstance(parts, Prewarmed) and parts.persona == load_persona("default")
    assert parts.stt is not None and parts.stt._model.done()  # Whisper is loaded
    assert _shape_predictor.cache_info().currsize == 1  # the landmark model stays loaded for the room

    server = LocalLLMServer(port=9)  # the worker's shared server: only its URL is used here
    async with stack_from(parts, server=server) as stack:
        assert stack.engine.voice is parts.voice and stack.engine.renderer is parts.renderer
        assert stack.stt is parts.stt and stack.server is server
        assert stack.llm.base_url == "http://127.0.0.1:9/v1"
        handle = stack.engine.say("Hello.")
        async for _ in stack.engine.frames():
            if handle.done:
                break
        assert handle.played_text() == "Hello."


def test_rooms_as_threads_share_the_process_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rooms at once, each on its own thread and event loop as livekit-agents runs them: one
    Whisper and one joint model for both, loaded once, after the idle thread's prewarm."""
    loads: list[object] = []
    real_load = stack_module.load_joint_model

    def counted(settings: object) -> object:
        loads.append(settings)
        return real_load(settings)  # type: ignore[arg-type]

    monkeypatch.setattr(stack_module, "load_joint_model", counted)
    server = build_server(WorkerConfig(max_sessions=3))
    assert server._job_executor_type == JobExecutorType.THREAD
    proc = JobProcess(executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None)
    prewarm(WorkerConfig(), proc)  # an idle job thread warms the process's models
    built: list[AvatarStack] = []
    both = threading.Barrier(2)

    def room() -> None:
        async def serve() -> None:
            persona = load_persona("default")
            async with open_stack(persona, server=LocalLLMServer(port=9), models=process_models()) as stack:
                built.append(stack)
                await asyncio.to_thread(both.wait, 120)  # both rooms are open at the same time
                handle = stack.engine.say("Hello.")
                async for _ in stack.engine.frames():
                    if handle.done:
                        break
                assert handle.played_text() == "Hello."

        asyncio.run(serve())

    threads = [threading.Thread(target=room, name=f"room-{k}") for k in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert len(built) == 2 and built[0].stt is built[1].stt  # one Whisper
        assert len(loads) == 1  # one joint model, loaded by the prewarm
        load = functools.partial(session_load, 3)
        assert load(cast(AgentServer, Busy(2))) < LOAD_FULL  # a third room is still welcome
    finally:
        asyncio.run(close_process_models())


def test_room_processes_spread_over_the_workers_llm_servers() -> None:
    ports = (40001, 40002)
    chosen = [room_llm_port(ports, f"AJ_{k}") for k in range(20)]
    assert set(chosen) == set(ports)  # both used
    assert room_llm_port(ports, "AJ_3") == chosen[3]  # the same job, the same server
    assert room_llm_port((40001,), "AJ_3") == 40001


async def test_each_room_gets_the_llm_server_the_worker_meant_for_it() -> None:
    """Rooms as threads choose among the worker's servers themselves; room processes take one by job id;
    with none started by the worker, a room runs its own for its lifetime."""
    embedded = load_persona("default")
    other = load_persona("default").model_copy(
        update={"llm": load_persona("default").llm.model_copy(update={"base_url": "http://127.0.0.1:9/v1"})}
    )
    with_ports = WorkerConfig(llm_ports=(40001, 40002))
    async with contextlib.AsyncExitStack() as owned:
        assert await room_llm_server(with_ports, embedded, True, "AJ_1", owned) is None
        given = await room_llm_server(with_ports, embedded, False, "AJ_1", owned)
        assert given is not None and given.port == room_llm_port(with_ports.llm_ports, "AJ_1")
        assert given._process is None  # the worker's: only its URL is used
        assert await room_llm_server(WorkerConfig(), other, True, "AJ_1", owned) is None
        own = await room_llm_server(WorkerConfig(), embedded, True, "AJ_2", owned)
        assert own is not None and own._process is not None and own._process.returncode is None
    assert own._process is None or own._process.returncode is not None  # stopped with the room
