"""The embedded LLM: llama-cpp-python's OpenAI-compatible server with the bundled SmolLM2, as a child.

dyad talks to every LLM through the ``openai`` client; the embedded default is just another
OpenAI-compatible endpoint, on 127.0.0.1 at a free port, started and stopped with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from avatar_core import bundled
from avatar_core.workers import lower_process_priority

log = logging.getLogger(__name__)

MODEL_ALIAS = "SmolLM2-135M-Instruct"
LOCAL_API_KEY = "sk-dyad-local"  # the server checks no key, the client needs one
# The embedded server's prompt-state cache, in MiB of llama.cpp state as llama-cpp-python counts it
# (0: none); see LocalLLMServer. Three sessions taking turns need each one's last state kept while
# the other two save two each (reply and warm-up): five states of up to ~10 MB (420 tokens) when the
# history window is full. At 96 MiB they resumed their own prompts on every turn but a window slide
# (bench/prompt_cache.py --sessions 3: 708 prompt tokens evaluated after the first turns, 8279
# without; at 64 MiB, 1339: states evicted too soon) for 195-265 MB more server memory; one session
# evaluates the same tokens with it as without.
DEFAULT_CACHE_MB = 96


_PREFIX = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")
_CACHE_HIT = "Llama._create_completion: cache hit"


@dataclass(frozen=True)
class PromptFigures:
    """What the server's (verbose) log says of one request's prompt."""

    reused_tokens: int | None  # kept in the context from the previous request (or a loaded state)
    evaluated_tokens: int | None  # evaluated for this request
    cache_hit: bool  # the prompt-state cache held a longer prefix than the context, and was loaded
    log: list[str]  # the lines these figures were read from


def prompt_figures(lines: Sequence[str]) -> PromptFigures:
    """The prompt figures of one request, from the log lines it wrote (:meth:`LocalLLMServer.log_tail`).

    llama.cpp's own prompt eval timer is left out: it reads ~0 ms for some long prompts."""
    reused = evaluated = None
    for line in lines:
        if match := _PREFIX.search(line):
            reused, evaluated = int(match.group(1)), int(match.group(2))
        elif (match := _PROMPT_EVAL.search(line)) and evaluated is None:
            reused, evaluated = 0, int(match.group(2))  # no prefix hit: the whole prompt was evaluated
    said = [
        line.strip()
        for line in lines
        if _PREFIX.search(line)
        or "prompt eval time" in line
        or "cached" in line
        or "_create_completion: cache" in line
    ]
    return PromptFigures(reused, evaluated, any(_CACHE_HIT in line for line in lines), said)


class LocalServerError(RuntimeError):
    """The embedded LLM server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalLLMServer:
    """``async with LocalLLMServer() as server: AsyncOpenAI(base_url=server.base_url, ...)``."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int = 1,
        n_threads_batch: int | None = None,
        n_batch: int = 32,
        cache_mb: int = DEFAULT_CACHE_MB,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.model_path = model_path
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        # Prompt evaluation gets the same thread budget as generation. llama-cpp-python's default is
        # every core, and its threads meet at a barrier after each layer: on a 2-core machine shared
        # with STT, TTS and rendering, one preempted thread stalls the other, and a 17-token prompt
        # suffix took 4-38 s (0.25-2.1 s a token) while generation ran at 60-100 ms a token.
        self.n_threads_batch = n_threads if n_threads_batch is None else n_threads_batch
        # Prompt tokens evaluated per llama_decode call. Small, because llama-cpp-python copies that
        # many rows of logits (n_vocab floats each: 196 KB a row for SmolLM2) into every saved prompt
        # state without counting them in the cache's size: 6.3 MB a state at 32, up to 100 MB at its
        # default 512. A 351-token prompt took as long at 16, 64 and 512 (one thread, ~20 ms a token).
        self.n_batch = n_batch
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be 0 (no prompt-state cache) or more, not {cache_mb}")
        # llama-cpp-python's RAM cache of prompt states: after each completion the server saves its
        # context (keyed by the prompt and completion tokens), and before one it loads the saved state
        # with the longest common prefix when that is longer than what the context holds. The server
        # has one context, so without it two sessions talking in turn evaluate each other's whole
        # history again on every turn; with it, each resumes its own. See docs/design.md. Each saved
        # state also holds n_batch rows of logits the size leaves out (see above), so the server's
        # memory grows by 2-3 times cache_mb (96 MiB: +195 MB for one session, +265 MB for three).
        self.cache_mb = cache_mb
        self.startup_timeout_s = startup_timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    def log_tail(self, lines: int = 5) -> list[str]:
        """The last lines the server wrote to its log."""
        if self._log is None:
            return []
        text = Path(self._log.name).read_text(errors="replace")
        return text.strip().splitlines()[-lines:]

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (for measuring its CPU and memory), else None."""
        return self._process.pid if self._process is not None else None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``http://127.0.0.1:PORT/v1``)."""
        if self.port is None:
            raise LocalServerError("the embedded LLM server is not started")
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        """Start the server and wait until it answers ``GET /v1/models``."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalServerError(
                "llama-cpp-python is not installed. Fix: pip install 'dyad[local]' "
                "(or: pip install 'llama-cpp-python[server]==0.3.36')"
            )
        model = self.model_path or bundled.smollm2_gguf()
        self.port = self.port or free_port(self.host)
        # Through integrations.llm.child: the server ends when this process does, even a killed one.
        args = [
            sys.executable, "-m", "integrations.llm.child", str(os.getpid()),
            "--model", str(model), "--model_alias", MODEL_ALIAS,
            "--host", self.host, "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads_batch), "--n_batch", str(self.n_batch),
            # Logits of the last token only (llama-cpp-python's library default; the server's keeps
            # every token's, for logprobs, which dyad never asks for): 180 MB less for a 351-token prompt.
            "--logits_all", "false",
            # A request that arrives while another streams waits for it. llama-cpp-python's default ends
            # the streaming reply with a normal [DONE] instead: a client sees a complete reply cut short
            # ("Yes, you") whenever sessions or avatars share the server, or a prompt warm-up overlaps.
            "--interrupt_requests", "false",
        ]  # fmt: skip
        if self.cache_mb > 0:
            args += ["--cache", "true", "--cache_type", "ram", "--cache_size", str(self.cache_mb * 2**20)]
        log.info("starting embedded LLM server on %s", self.base_url)
        # A file, not a pipe: llama.cpp logs every request and a full pipe would stall the server.
        self._log = tempfile.NamedTemporaryFile(prefix="dyad-llm-", suffix=".log", delete=False)  # noqa: SIM115
        self._process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=self._log
        )
        # Compute: below the frame loops that share the machine (docs/design.md, "Threads").
        lower_process_priority(self._process.pid)
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        from openai import APIError, AsyncOpenAI

        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        client = AsyncOpenAI(base_url=self.base_url, api_key=LOCAL_API_KEY, timeout=2.0, max_retries=0)
        try:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    raise LocalServerError(
                        f"the embedded LLM server exited with code {self._process.returncode}: "
                        + " | ".join(self.log_tail())
                    )
                with contextlib.suppress(APIError):
                    await client.models.list()
                    log.info("embedded LLM server ready on %s", self.base_url)
                    return
                await asyncio.sleep(0.2)
        finally:
            await client.close()
        raise LocalServerError(
            f"the embedded LLM server did not answer within {self.startup_timeout_s:.0f} s: "
            + " | ".join(self.log_tail())
        )

    async def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after 5 s."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    async def __aenter__(self) -> LocalLLMServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
