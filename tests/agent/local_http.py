"""An aiohttp app served on 127.0.0.1 at a free port, for tests of clients of OpenAI-style endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve_post(path: str, handler: Handler) -> AsyncIterator[str]:
    """``POST path`` answered by ``handler`` on 127.0.0.1 at a free port; yields ``http://127.0.0.1:PORT/v1``."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        await runner.cleanup()
