"""`dyad serve`: talk to the avatar in a local browser page over WebRTC (like Pipecat's SmallWebRTC).

One aiohttp app serves the page (``GET /``) and answers the page's SDP offer (``POST /offer``). Each tab
gets its own ``RTCPeerConnection`` (aiortc) and its own avatar stack, up to ``max_sessions``; beyond it
``POST /offer`` answers 503 ``{"error": "busy"}``. All stacks share one embedded LLM server.

Media: ONE consumer task reads ``engine.frames()`` (paced by the engine's real clock) and routes audio
and video frames into two queues that the outgoing tracks' ``recv()`` await. Audio is never dropped;
video drops its oldest frame when the browser lags. The browser's microphone is resampled to 16 kHz mono
float32 for ``session.push_audio``; its camera is sampled every 100 ms for ``session.push_video``.

The data channel ``events`` carries every session event to the page as JSON (``to_dict``), and typed
questions (``{"type": "text", "text": ...}``) and ``{"type": "end"}`` back. Closing the tab (connection
failed or closed, the data channel closing) or ``POST /end`` ends the session and frees everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import signal
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiohttp import web
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.events import SessionEvent, to_dict
from agent.persona import Persona
from agent.session import Session
from avatar_core.config import AppSettings
from avatar_core.frames import AUDIO_RATE, AudioFrame, VideoFrame
from integrations.llm.local_server import LocalLLMServer
from integrations.stack import AvatarStack, open_stack

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
USER_RATE = 16_000  # what the Session takes
USER_VIDEO_EVERY_S = 0.1
VIDEO_CLOCK = 90_000
VIDEO_QUEUE = 3  # frames; older ones are dropped when the browser lags
AUDIO_QUEUE_WARN = 250  # 5 s of audio waiting: the browser stopped reading
STACK_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 60.0
BUSY_MESSAGE = "The avatar is busy, try again in a minute"


async def _close_session(stack: AvatarStack, limit_s: float = 30.0) -> None:
    """Close the Session before ``open_stack`` does, interrupting speech meanwhile and giving up after
    ``limit_s``, so a close that hangs (a library swallowing cancellation) never holds a session slot."""
    closing = asyncio.ensure_future(stack.session.aclose())
    deadline = time.monotonic() + limit_s
    while not closing.done() and time.monotonic() < deadline:
        stack.engine.interrupt()
        await asyncio.wait({closing}, timeout=0.05)
    if not closing.done():
        log.warning("the session did not close in %.0f s", limit_s)
        closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing


# ---------------------------------------------------------------------------------------------------
# Outgoing tracks
# ---------------------------------------------------------------------------------------------------


class AvatarAudioTrack(MediaStreamTrack):
    """The avatar's voice: 20 ms s16 mono 24 kHz frames, as the engine produces them."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue()
        self._warned = False

    def put(self, frame: AudioFrame | None) -> None:
        """Queue one engine frame (``None``: the end)."""
        if self.queue.qsize() > AUDIO_QUEUE_WARN and not self._warned:
            self._warned = True
            log.warning("the browser is not reading the avatar's audio")
        self.queue.put_nowait(frame)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        out = av.AudioFrame.from_ndarray(frame.samples.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate = AUDIO_RATE
        out.pts = round(frame.pts_s * AUDIO_RATE)
        out.time_base = fractions.Fraction(1, AUDIO_RATE)
        return out


class AvatarVideoTrack(MediaStreamTrack):
    """The avatar's face, at the engine's frame rate; the oldest frame is dropped when the browser lags."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.frames: deque[VideoFrame | None] = deque()
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, frame: VideoFrame | None) -> None:
        """Queue one engine frame (``None``: the end)."""
        if frame is not None and len(self.frames) >= VIDEO_QUEUE:
            self.frames.popleft()
            self.dropped += 1
        self.frames.append(frame)
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        while not self.frames:
            self._ready.clear()
            await self._ready.wait()
        frame = self.frames.popleft()
        if frame is None:
            self.stop()
            raise MediaStreamError
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image), format="rgb24")
        out = out.reformat(format="yuv420p")
        out.pts = round(frame.pts_s * VIDEO_CLOCK)
        out.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return out


# ---------------------------------------------------------------------------------------------------
# One browser tab
# ---------------------------------------------------------------------------------------------------


class WebSession:
    """One tab: its peer connection, its avatar stack and every task that serves it."""

    def __init__(
        self,
        app: DyadServer,
        persona: Persona,
        settings: AppSettings,
        server: LocalLLMServer | None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.app = app
        self.persona = persona
        self.settings = settings
        self.llm_server = server
        self.pc = RTCPeerConnection()
        self.audio = AvatarAudioTrack()
        self.video = AvatarVideoTrack()
        self.channel: RTCDataChannel | None = None
        self.stack: AvatarStack | None = None
        self.events: list[dict[str, Any]] = []  # everything sent to the page (for tests and logs)
        self._pending: list[str] = []  # messages waiting for the data channel
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._started = False
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=f"dyad-webrtc-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: %s failed", self.id, task.get_name(), exc_info=task.exception())

    async def _run(self) -> None:
        """Own the avatar stack for the life of the session (enter and exit in one task)."""
        try:
            async with open_stack(self.persona, self.settings, server=self.llm_server) as stack:
                self.stack = stack
                stack.session.on(self._publish)
                self._ready.set()
                await self._done.wait()
                await self._stop_tasks()
                await _close_session(stack)
        except Exception as exc:
            self._failure = exc
            log.exception("session %s: the avatar stack failed", self.id)
        finally:
            self._ready.set()

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Build the stack, take the page's offer and give back the answer."""
        self._runner = asyncio.get_running_loop().create_task(self._run(), name=f"dyad-webrtc-{self.id}")
        await asyncio.wait_for(self._ready.wait(), STACK_TIMEOUT_S)
        if self._failure is not None or self.stack is None:
            raise RuntimeError(f"the avatar could not start: {self._failure}")
        pc = self.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.id, pc.connectionState)
            if pc.connectionState == "connected":
                self._start_media()
            elif pc.connectionState in ("failed", "closed"):
                self.app.end(self)

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            self.channel = channel
            for message in self._pending:
                channel.send(message)
            self._pending.clear()

            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                self._on_message(message)

            @channel.on("close")
            def on_close() -> None:
                self.app.end(self)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._read_mic(track), "mic")
            elif track.kind == "video":
                self._spawn(self._read_camera(track), "camera")

        await pc.setRemoteDescription(offer)
        pc.addTrack(self.audio)
        pc.addTrack(self.video)
        await pc.setLocalDescription(await pc.createAnswer())
        self._spawn(self._expire_unconnected(), "watchdog")
        return pc.localDescription

    async def _expire_unconnected(self) -> None:
        """Free the slot of a page that took the answer but never connected."""
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not self._started:
            log.warning("session %s: the page never connected", self.id)
            self.app.end(self)

    def _start_media(self) -> None:
        if self._started or self._closing or self.stack is None:
            return
        self._started = True
        self._spawn(self._pump(self.stack), "engine")
        self._spawn(self._greet(self.stack.session), "greeting")

    async def close(self) -> None:
        """End the session: stop the tasks, the stack and the peer connection."""
        if self._closing:
            return
        self._closing = True
        self._done.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        await self._stop_tasks()
        self.audio.put(None)
        self.video.put(None)
        await self.pc.close()
        log.info("session %s ended", self.id)

    async def _stop_tasks(self) -> None:
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- media --------------------------------------------------------------------------------------

    async def _pump(self, stack: AvatarStack) -> None:
        """The one consumer of ``engine.frames()``: route each frame to its track."""
        async for frame in stack.engine.frames():
            if isinstance(frame, AudioFrame):
                self.audio.put(frame)
            else:
                self.video.put(frame)

    async def _greet(self, session: Session) -> None:
        await session.start()

    async def _read_mic(self, track: MediaStreamTrack) -> None:
        assert self.stack is not None
        session, clock = self.stack.session, self.stack.engine.clock
        resampler = av.AudioResampler(format="flt", layout="mono", rate=USER_RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not self._started:
                continue  # the avatar's clock has not started yet
            assert isinstance(frame, av.AudioFrame)
            chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            if not chunks:
                continue
            samples: npt.NDArray[np.float32] = np.concatenate(chunks).astype(np.float32, copy=False)
            if samples.size:
                await session.push_audio(samples, max(0.0, clock.now() - samples.size / USER_RATE))

    async def _read_camera(self, track: MediaStreamTrack) -> None:
        assert self.stack is not None
        session, clock = self.stack.session, self.stack.engine.clock
        last = -USER_VIDEO_EVERY_S
        pushing: asyncio.Task[None] | None = None
        while True:
            try:
                frame = await track.recv()  # always drain, or aiortc's queue grows
            except MediaStreamError:
                return
            now = time.monotonic()
            if not self._started or now - last < USER_VIDEO_EVERY_S:
                continue
            if pushing is not None and not pushing.done():
                continue  # the last frame is still being analysed
            assert isinstance(frame, av.VideoFrame)
            last = now
            rgb = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
            pushing = self._spawn(session.push_video(rgb, clock.now()), "face")

    # -- events -------------------------------------------------------------------------------------

    def _publish(self, event: SessionEvent) -> None:
        self.send(to_dict(event))

    def send(self, data: dict[str, Any]) -> None:
        """Send one JSON message to the page (queued until the data channel opens)."""
        self.events.append(data)
        message = json.dumps(data)
        channel = self.channel
        if channel is None:
            self._pending.append(message)
        elif channel.readyState == "open":
            channel.send(message)

    def _on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            log.warning("session %s: not JSON: %r", self.id, message[:80])
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "text" and isinstance(data.get("text"), str) and self.stack is not None:
            self._spawn(self.stack.session.submit_text(data["text"]), "typed")
        elif kind == "end":
            self.app.end(self)


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------


class DyadServer:
    """The page, the signalling endpoints and the live sessions."""

    def __init__(
        self,
        persona: Persona,
        *,
        max_sessions: int = 2,
        settings: AppSettings | None = None,
        llm_server: LocalLLMServer | None = None,
    ) -> None:
        self.persona = persona
        self.max_sessions = max_sessions
        self.settings = settings or AppSettings()
        self.llm_server = llm_server
        self.sessions: dict[str, WebSession] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.app = web.Application()
        self.app.router.add_get("/", self._index)
        self.app.router.add_post("/offer", self._offer)
        self.app.router.add_post("/end", self._end)
        self.app.router.add_static("/static/", STATIC)
        self.app.on_shutdown.append(self._shutdown)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
            offer = RTCSessionDescription(sdp=str(params["sdp"]), type=str(params["type"]))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {sdp, type}"}, status=400)
        if len(self.sessions) >= self.max_sessions:
            return web.json_response({"error": "busy", "message": BUSY_MESSAGE}, status=503)
        session = WebSession(self, self.persona, self.settings, self.llm_server)
        self.sessions[session.id] = session  # hold the slot while the stack starts
        try:
            answer = await session.answer(offer)
        except Exception as exc:
            log.exception("cannot start a session")
            self.sessions.pop(session.id, None)
            await session.close()
            return web.json_response({"error": "failed", "message": str(exc)}, status=500)
        log.info("session %s started (%d live)", session.id, len(self.sessions))
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": session.id})

    async def _end(self, request: web.Request) -> web.Response:
        try:
            session_id = str((await request.json())["session_id"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {session_id}"}, status=400)
        session = self.sessions.get(session_id)
        if session is not None:
            await self.end_now(session)
        return web.json_response({"ended": session is not None})

    def end(self, session: WebSession) -> None:
        """End ``session`` in the background (from a callback)."""
        if self.sessions.get(session.id) is not session:
            return
        task = asyncio.get_running_loop().create_task(self.end_now(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def end_now(self, session: WebSession) -> None:
        """End ``session`` and free its slot."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        await session.close()

    async def wait_closed(self) -> None:
        """Wait for sessions being ended in the background."""
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def close(self) -> None:
        """End every session."""
        await asyncio.gather(*(self.end_now(s) for s in list(self.sessions.values())))
        await self.wait_closed()

    async def _shutdown(self, app: web.Application) -> None:
        await self.close()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    persona: Persona | str | None = None,
    max_sessions: int = 2,
    *,
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve the page until SIGINT/SIGTERM (or cancelled); prints the URL to open.

    ``persona``: a loaded persona, or a name or YAML path (default: the configured persona).
    """
    from agent.persona import EMBEDDED, load_persona

    settings = AppSettings()
    if not isinstance(persona, Persona):
        persona = load_persona(persona or settings.persona)
    llm_server: LocalLLMServer | None = None
    if persona.llm.base_url == EMBEDDED:
        llm_server = LocalLLMServer()
        await llm_server.start()
    runner: web.AppRunner | None = None
    try:
        dyad = DyadServer(persona, max_sessions=max_sessions, settings=settings, llm_server=llm_server)
        runner = web.AppRunner(dyad.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = f"http://{shown}:{port}/"
        print(f"dyad: talk to {persona.identity.display_name} at {url}  (Ctrl+C to stop)", flush=True)
        if on_ready is not None:
            result = on_ready(url)
            if result is not None:
                await result
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop.set)  # a clean stop: sessions, then the LLM
        await stop.wait()
        print("dyad: stopping", flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signum)
        if runner is not None:
            await runner.cleanup()
        if llm_server is not None:
            await llm_server.stop()


def main(
    host: str = "127.0.0.1", port: int = 8080, persona: Persona | str | None = None, max_sessions: int = 2
) -> None:
    """Blocking entry point for the CLI: serve until Ctrl+C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, persona, max_sessions))
