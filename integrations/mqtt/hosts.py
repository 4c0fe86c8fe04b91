"""The transports a kiosk runs its sessions on (``dyad kiosk --transport``).

- :class:`BrowserHost` (``browser``): ``dyad serve``'s local WebRTC page, one session at a time; a
  session begins when someone presses Start on the page and the kiosk bridges it from then on.
- :class:`FilesHost` (``files``): every session is a conversation with a recorded visitor
  (``integrations/files``), run faster than real time on a virtual clock and written to
  ``OUT_DIR/session-NNN.mp4`` and ``.json``. For trying a kiosk integration without a camera or a person.
- :class:`LiveKitHost` (``livekit``): every session is the avatar joining one LiveKit room
  (``integrations/livekit``, as ``dyad livekit join`` does), where the kiosk's own client is; it greets
  whoever is there and leaves when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from livekit import rtc

from agent.persona import Persona
from agent.session import Session
from avatar_core.config import AppSettings
from integrations.files.converse import ConverseResult, converse
from integrations.livekit.attendee import AttendPolicy
from integrations.livekit.listen import TrackReader
from integrations.livekit.room import RoomAvatar
from integrations.mqtt.kiosk import HostError, KioskSession
from integrations.stack import SharedModels, open_stack
from integrations.webrtc.server import DyadServer, WebSession

if TYPE_CHECKING:
    from integrations.mqtt.kiosk import Kiosk

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _started(ready: asyncio.Future[T], run: asyncio.Task[Any], ended: str) -> T:
    """Wait until ``run`` reports ``ready`` or ends first: its error, or :class:`HostError` (``ended``)."""
    try:
        await asyncio.wait({ready, run}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        run.cancel()
        raise
    if not ready.done():
        run.result()  # raises why it could not start
        raise HostError(ended)
    return ready.result()


# ---------------------------------------------------------------------------------------------------
# browser
# ---------------------------------------------------------------------------------------------------


class _KioskPage(DyadServer):
    """``dyad serve`` with each tab's session reported to the kiosk."""

    def __init__(
        self, host: BrowserHost, persona: Persona, settings: AppSettings, models: SharedModels
    ) -> None:
        super().__init__(persona, max_sessions=1, settings=settings, models=models)
        self.host = host

    async def _offer(self, request: web.Request) -> web.Response:
        before = set(self.sessions)
        response = await super()._offer(request)
        for key in set(self.sessions) - before:
            self.host.opened(self.sessions[key])
        return response

    async def end_now(self, session: WebSession) -> None:
        await super().end_now(session)
        self.host.ended(session)


class BrowserHost:
    """The local browser page (``integrations/webrtc``), one session at a time."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8080, settings: AppSettings | None = None
    ) -> None:
        self.address = (host, port)
        self.settings = settings or AppSettings()
        self.persona: Persona | None = None
        self.page: _KioskPage | None = None
        self.url = ""
        self._kiosk: Kiosk | None = None
        self._models = SharedModels(self.settings)
        self._closing: set[WebSession] = set()

    def bind(self, kiosk: Kiosk) -> None:
        self._kiosk = kiosk

    def use_persona(self, persona: Persona) -> None:
        """The persona of the next tab's session."""
        self.persona = persona
        if self.page is not None:
            self.page.persona = persona

    async def start(self) -> None:
        """Serve the page (and start the embedded LLM if the persona uses it)."""
        assert self.persona is not None, "bind the host to a kiosk first"
        await self._models.llm_server(self.persona)
        self.page = _KioskPage(self, self.persona, self.settings, self._models)
        self.url = await self.page.start(*self.address)
        print(f"dyad kiosk: open the kiosk page at {self.url}", flush=True)

    async def aclose(self) -> None:
        if self.page is not None:
            await self.page.stop()
        await self._models.aclose()

    async def open_session(self, persona: Persona, attach: Callable[[KioskSession], None]) -> KioskSession:
        raise HostError(
            f"with --transport browser a session begins when someone presses Start on the kiosk page "
            f"({self.url or 'not served yet'}); it cannot be opened over MQTT"
        )

    async def close_session(self, session: KioskSession) -> None:
        """End the tab's session (the page shows that it ended)."""
        if self.page is None:
            return
        for page in list(self.page.sessions.values()):
            if page.stack is not None and page.stack.session is session:
                self._closing.add(page)
                try:
                    await self.page.end_now(page)
                finally:
                    self._closing.discard(page)

    def opened(self, page: WebSession) -> None:
        if self._kiosk is not None and page.stack is not None:
            self._kiosk.attach(page.stack.session, "page")

    def ended(self, page: WebSession) -> None:
        if self._kiosk is not None and page.stack is not None and page not in self._closing:
            self._kiosk.detach(page.stack.session, "page_closed")


# ---------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------


class FilesHost:
    """Sessions with a recorded visitor (``integrations/files``), one MP4 and JSON per session."""

    def __init__(
        self,
        user_audio: Path,
        out_dir: Path,
        user_video: Path | None = None,
        *,
        seed: int = 0,
        settings: AppSettings | None = None,
    ) -> None:
        self.user_audio = user_audio
        self.user_video = user_video
        self.out_dir = out_dir
        self.seed = seed
        self.settings = settings or AppSettings()
        self.count = 0
        self._kiosk: Kiosk | None = None
        self._models = SharedModels(self.settings)
        self._runs: dict[int, asyncio.Task[ConverseResult]] = {}  # id(session) -> its conversation

    def bind(self, kiosk: Kiosk) -> None:
        self._kiosk = kiosk

    def use_persona(self, persona: Persona) -> None:
        """Nothing to do: each session is opened with the kiosk's current persona."""

    async def start(self) -> None:
        await asyncio.to_thread(self.out_dir.mkdir, parents=True, exist_ok=True)

    async def aclose(self) -> None:
        for task in list(self._runs.values()):
            task.cancel()
        await asyncio.gather(*self._runs.values(), return_exceptions=True)
        await self._models.aclose()

    async def open_session(self, persona: Persona, attach: Callable[[KioskSession], None]) -> KioskSession:
        """Start a conversation with the recording; returns once its Session exists."""
        self.count += 1
        out = self.out_dir / f"session-{self.count:03d}.mp4"
        ready: asyncio.Future[Session] = asyncio.get_running_loop().create_future()

        def on_session(session: Session) -> None:
            attach(session)
            ready.set_result(session)

        run = asyncio.create_task(
            converse(
                persona,
                self.user_audio,
                out,
                out.with_suffix(".json"),
                self.user_video,
                seed=self.seed,
                settings=self.settings,
                models=self._models,
                on_session=on_session,
            ),
            name=f"dyad-kiosk-files-{self.count}",
        )
        session = await _started(ready, run, "the conversation ended before it began")
        self._runs[id(session)] = run
        run.add_done_callback(lambda task: self._finished(session, out, task))
        return session

    def _finished(self, session: Session, out: Path, task: asyncio.Task[ConverseResult]) -> None:
        self._runs.pop(id(session), None)
        if task.cancelled():
            return  # close_session did it, and the kiosk reports why
        if task.exception() is not None:
            log.error("the conversation failed", exc_info=task.exception())
            reason = f"failed: {task.exception()}"
        else:
            log.info("wrote %s and %s", out, out.with_suffix(".json"))
            reason = "input_ended"
        if self._kiosk is not None:
            self._kiosk.detach(session, reason)

    async def close_session(self, session: KioskSession) -> None:
        """Stop the conversation (what was recorded so far is kept)."""
        run = self._runs.get(id(session))
        if run is not None:
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run


# ---------------------------------------------------------------------------------------------------
# livekit
# ---------------------------------------------------------------------------------------------------

RoomOpener = Callable[[str, Persona], contextlib.AbstractAsyncContextManager["rtc.Room"]]


@contextlib.asynccontextmanager
async def livekit_room(room_name: str, persona: Persona, url: str | None = None) -> AsyncIterator[rtc.Room]:
    """Connect to ``room_name`` as the persona's identity (token minted from LIVEKIT_API_KEY/SECRET)."""
    from integrations.livekit.join import JoinError, connected_room
    from integrations.livekit.tokens import TokenError, resolve_credentials

    try:
        credentials = resolve_credentials(room_name, persona.identity, url=url)
    except TokenError as exc:
        raise HostError(f"cannot join LiveKit room {room_name!r}: {exc}") from None
    try:
        async with connected_room(room_name, credentials) as room:
            yield room
    except JoinError as exc:
        raise HostError(f"LiveKit: {exc}") from None


class LiveKitHost:
    """Each session: the avatar joins one LiveKit room and leaves it when the session ends."""

    def __init__(
        self,
        room: str,
        *,
        url: str | None = None,
        policy: AttendPolicy | None = None,
        settings: AppSettings | None = None,
        opener: RoomOpener | None = None,
        reader: TrackReader | None = None,
    ) -> None:
        self.room = room
        self.policy = policy
        self.settings = settings or AppSettings()
        self.reader = reader  # tests play recorded media through a room double
        self._open: RoomOpener = opener or (lambda name, persona: livekit_room(name, persona, url))
        self._kiosk: Kiosk | None = None
        self._models = SharedModels(self.settings)
        self._runs: dict[int, tuple[asyncio.Task[None], RoomAvatar]] = {}
        self._closing: set[int] = set()  # sessions close_session is ending (the kiosk says why)

    def bind(self, kiosk: Kiosk) -> None:
        self._kiosk = kiosk

    def use_persona(self, persona: Persona) -> None:
        """Nothing to do: each session is opened with the kiosk's current persona."""

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        for task, avatar in list(self._runs.values()):
            avatar.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._models.aclose()

    async def open_session(self, persona: Persona, attach: Callable[[KioskSession], None]) -> KioskSession:
        """Build the avatar, join the room, and start serving it; returns once it is in the room."""
        ready: asyncio.Future[tuple[Session, RoomAvatar]] = asyncio.get_running_loop().create_future()
        run = asyncio.create_task(self._serve(persona, attach, ready), name=f"dyad-kiosk-{self.room}")
        session, avatar = await _started(ready, run, f"the avatar left room {self.room!r} at once")
        self._runs[id(session)] = (run, avatar)
        run.add_done_callback(lambda task: self._finished(session, task))
        return session

    async def _serve(
        self,
        persona: Persona,
        attach: Callable[[KioskSession], None],
        ready: asyncio.Future[tuple[Session, RoomAvatar]],
    ) -> None:
        async with (
            open_stack(persona, self.settings, models=self._models) as stack,
            self._open(self.room, persona) as room,
        ):
            avatar = RoomAvatar(room, stack, policy=self.policy, reader=self.reader)
            attach(stack.session)  # before run(): it starts the session (the greeting) when someone is there
            ready.set_result((stack.session, avatar))
            log.info("joined LiveKit room %s as %s", self.room, persona.identity.livekit_identity)
            await avatar.run()

    def _finished(self, session: Session, task: asyncio.Task[None]) -> None:
        self._runs.pop(id(session), None)
        if task.cancelled() or id(session) in self._closing:
            return
        if task.exception() is not None:
            log.error("the room session failed", exc_info=task.exception())
            reason = f"failed: {task.exception()}"
        else:
            reason = "room_closed"
        if self._kiosk is not None:
            self._kiosk.detach(session, reason)

    async def close_session(self, session: KioskSession) -> None:
        """Leave the room."""
        entry = self._runs.get(id(session))
        if entry is not None:
            run, avatar = entry
            self._closing.add(id(session))
            try:
                avatar.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
            finally:
                self._closing.discard(id(session))
