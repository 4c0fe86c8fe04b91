"""`dyad serve`: talk to the avatar in a local browser page over WebRTC (like Pipecat's SmallWebRTC).

One aiohttp app serves the page (``GET /``), its ICE servers (``GET /config``: none unless configured, so
nothing leaves the machine; see :mod:`integrations.webrtc.ice`) and answers the page's SDP offer
(``POST /offer``). It listens on 127.0.0.1 unless told otherwise. Each tab
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
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from agent.events import SessionEvent, to_dict
from agent.persona import Persona
from avatar_core.config import AppSettings
from avatar_core.frames import AUDIO_RATE, AudioFrame, OutputFrame, VideoFrame
from integrations.lifecycle import on_stop_signals
from integrations.stack import SharedModels, open_stack
from integrations.transport import AvatarTransport, UserAudio
from integrations.webrtc.ice import IceServer, rtc_configuration

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
VIDEO_CLOCK = 90_000
VIDEO_QUEUE = 3  # frames; older ones are dropped when the browser lags
AUDIO_QUEUE_WARN = 250  # 5 s of audio waiting: the browser stopped reading
STACK_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 60.0
BUSY_MESSAGE = "The avatar is busy, try again in a minute"
EXPOSED_WARNING = (
    "dyad: listening on {host}: anyone who can reach this machine can open the page and talk to the "
    "avatar (no login, no TLS; browsers allow the camera and microphone only on localhost or https). "
    "Put it behind a TLS reverse proxy with authentication, or use --host 127.0.0.1."
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


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


class WebSession(AvatarTransport):
    """One tab: its peer connection, its avatar stack and every task that serves it."""

    def __init__(
        self,
        app: DyadServer,
        persona: Persona,
        settings: AppSettings,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        super().__init__(name=f"webrtc-{self.id}")
        self.app = app
        self.persona = persona
        self.settings = settings
        self.pc = RTCPeerConnection(rtc_configuration(app.ice_servers))
        self.audio = AvatarAudioTrack()
        self.video = AvatarVideoTrack()
        self.channel: RTCDataChannel | None = None
        self.events: list[dict[str, Any]] = []  # everything sent to the page (for tests and logs)
        self._pending: list[str] = []  # messages waiting for the data channel
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._started = False
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Own the avatar stack for the life of the session (enter and exit in one task)."""
        try:
            async with open_stack(self.persona, self.settings, models=self.app.models) as stack:
                self.attach(stack)
                self._ready.set()
                await self._done.wait()
                await self.aclose()
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
                self.tasks.spawn(self._read_mic(track), "mic")
            elif track.kind == "video":
                self.tasks.spawn(self._read_camera(track), "camera")

        await pc.setRemoteDescription(offer)
        pc.addTrack(self.audio)
        pc.addTrack(self.video)
        await pc.setLocalDescription(await pc.createAnswer())
        self.tasks.spawn(self._expire_unconnected(), "watchdog")
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
        self.start_output()
        self.tasks.spawn(self.session.start(), "greeting")

    async def close(self) -> None:
        """End the session: stop the tasks, the stack and the peer connection."""
        if self._closing:
            return
        self._closing = True
        self._done.set()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        await self.aclose()  # already done by the runner, unless the stack never started
        log.info("session %s ended", self.id)

    async def close_media(self) -> None:
        self.audio.put(None)
        self.video.put(None)
        await self.pc.close()

    # -- media --------------------------------------------------------------------------------------

    async def send_frame(self, frame: OutputFrame) -> None:
        """Route one engine frame to its track."""
        if isinstance(frame, AudioFrame):
            self.audio.put(frame)
        else:
            self.video.put(frame)

    async def _read_mic(self, track: MediaStreamTrack) -> None:
        user_audio = UserAudio()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not self._started:
                continue  # the avatar's clock has not started yet
            assert isinstance(frame, av.AudioFrame)
            await self.push_user_audio(user_audio.push_frame(frame))

    async def _read_camera(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()  # always drain, or aiortc's queue grows
            except MediaStreamError:
                return
            if not self._started or not self.wants_user_video():
                continue
            assert isinstance(frame, av.VideoFrame)
            self.push_user_video(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))

    # -- events -------------------------------------------------------------------------------------

    def publish(self, event: SessionEvent) -> None:
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
            self.tasks.spawn(self.session.submit_text(data["text"]), "typed")
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
        models: SharedModels | None = None,
        ice_servers: Sequence[IceServer] = (),
    ) -> None:
        self.persona = persona
        self.max_sessions = max_sessions
        self.ice_servers = tuple(ice_servers)
        self.settings = settings or AppSettings()
        self.models = models or SharedModels(self.settings)  # shared by every tab; the caller closes it
        self.sessions: dict[str, WebSession] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.app = web.Application()
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/config", self._config)
        self.app.router.add_post("/offer", self._offer)
        self.app.router.add_post("/end", self._end)
        self.app.router.add_static("/static/", STATIC)
        self.app.on_shutdown.append(self._shutdown)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _config(self, request: web.Request) -> web.Response:
        return web.json_response({"iceServers": [s.for_page() for s in self.ice_servers]})

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
            offer = RTCSessionDescription(sdp=str(params["sdp"]), type=str(params["type"]))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {sdp, type}"}, status=400)
        if len(self.sessions) >= self.max_sessions:
            return web.json_response({"error": "busy", "message": BUSY_MESSAGE}, status=503)
        session = WebSession(self, self.persona, self.settings)
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

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> str:
        """Serve on ``host``:``port`` (loopback by default); returns the page's URL."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.url = f"http://{shown}:{port}/"
        if not is_loopback(host):
            log.warning(EXPOSED_WARNING.format(host=host))
        return self.url

    async def stop(self) -> None:
        """Stop serving: every session ends, then the listener."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


async def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    persona: Persona | str | None = None,
    max_sessions: int = 2,
    *,
    ice_servers: Sequence[IceServer] = (),
    on_ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve the page until SIGINT/SIGTERM (or cancelled); prints the URL to open.

    ``persona``: a loaded persona, or a name or YAML path (default: the configured persona).
    ``ice_servers``: STUN/TURN servers for the page and the server's peers (default none).
    """
    from agent.persona import load_persona

    settings = AppSettings()
    if not isinstance(persona, Persona):
        persona = load_persona(persona or settings.persona)
    models = SharedModels(settings)
    dyad = DyadServer(
        persona, max_sessions=max_sessions, settings=settings, models=models, ice_servers=ice_servers
    )
    try:
        await models.llm_server(persona)  # the embedded LLM, if used, before the first tab
        url = await dyad.start(host, port)
        print(f"dyad: talk to {persona.identity.display_name} at {url}  (Ctrl+C to stop)", flush=True)
        if on_ready is not None:
            result = on_ready(url)
            if result is not None:
                await result
        stop = asyncio.Event()
        with on_stop_signals(stop.set):  # a clean stop: sessions, then the models
            await stop.wait()
        print("dyad: stopping", flush=True)
    finally:
        await dyad.stop()
        await models.aclose()


def main(
    host: str = "127.0.0.1",
    port: int = 8080,
    persona: Persona | str | None = None,
    max_sessions: int = 2,
    ice_servers: Sequence[IceServer] = (),
) -> None:
    """Blocking entry point for the CLI: serve until Ctrl+C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, persona, max_sessions, ice_servers=ice_servers))
