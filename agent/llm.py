"""The language model: a streaming chat completion from any OpenAI-compatible endpoint.

The embedded SmolLM2 server and remote APIs are reached the same way, through ``openai.AsyncOpenAI``.
:class:`ChatLLM` adds what a live conversation needs on top: a bound on the time to the first token and
on every gap after it, retries only while nothing has been said yet, and errors that say how to fix them.
Given ``tools`` (OpenAI function definitions) and a runner, it also does function calling: the model's
calls are run between requests, their results sent back, and the reply after them streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import openai
from openai import AsyncOpenAI

from agent.persona import LLMConfig

log = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "sk-dyad-no-key"  # local servers check no key, but the client insists on one
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 2.0
MAX_TOOL_ROUNDS = 3  # requests that may call tools per reply; the one after them offers none

# Runs one function call: (name, JSON arguments) -> the result text sent back to the model.
ToolRunner = Callable[[str, str], str]
Messages = Sequence[Mapping[str, Any]]


class ChatModel(Protocol):
    """What a conversation needs of an LLM: a streamed reply. :class:`ChatLLM` is one (and also calls
    tools); tests use small fakes."""

    def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]: ...


# Chat-template tokens a badly configured server can leak into the text. An end-of-turn token ends the
# reply: whatever follows it is the model inventing the next turn.
_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_.:-]{1,40}\|>|</?s>")
_END_OF_TURN = frozenset({"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>"})
_PARTIAL_SPECIAL = re.compile(r"<(\|[A-Za-z0-9_.:-]{0,40}\|?|/?s?)?$")


class LLMError(RuntimeError):
    """The LLM gave no usable reply; the message says what went wrong and how to fix it."""

    def __init__(self, reason: str, *, attempts: int = 1, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts  # requests made, retries included
        self.retryable = retryable


GENERATED = "_generated"  # ChatHistory's own mark on an LLM-written reply; never sent


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _repeats(a: list[str], b: list[str]) -> bool:
    """Whether one reply's words are the other's, or the start of them (at least four words)."""
    n = min(len(a), len(b))
    return n >= 4 and a[:n] == b[:n]


class ChatHistory:
    """System prompt + a bounded window of the last ``history_turns`` user/assistant exchanges.

    The window slides in steps of half its size (from 8 turns back to 4), not one turn at a time: each
    slide changes every token after the system prompt, so llama.cpp's prompt cache (which reuses the
    longest common prefix of the last prompt) must evaluate the whole window again, about 9 ms a token on
    one core of the 2-core machine (steps of a quarter left ~230 tokens: 2-3.3 s on the busy machine).
    Steps of half come every fifth turn and leave half as much to evaluate, and :meth:`slid_for_reply`
    lets the server do it while the reply that slides the window plays. It slides when a reply is
    recorded, leaving room for the next question (a prompt holds at most ``max_turns`` user messages, the
    new one included), so :meth:`messages` between turns is already the start of the next prompt and can
    be evaluated before the user has finished speaking (:meth:`ChatLLM.warm`).
    """

    def __init__(self, system_prompt: str, max_turns: int) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.system_prompt = system_prompt
        self.max_turns = max_turns
        self.slide = max(0, min(max_turns // 2, max_turns - 2))  # dropped beyond the one that overflows
        # A turn is a user message and the reply to it: the window holds at most max_turns user messages.
        self._messages: deque[dict[str, str]] = deque()

    def add_user(self, text: str) -> None:
        """Record what the user said; two user messages in a row are merged into one."""
        text = text.strip()
        if not text:
            return
        if self._messages and self._messages[-1]["role"] == "user":
            self._messages[-1]["content"] += " " + text
        else:
            self._messages.append({"role": "user", "content": text})
        self._trim()

    def add_assistant(self, text: str, *, generated: bool = False) -> None:
        """Record only what was actually spoken (the played part on barge-in); ``generated``: the LLM
        wrote it (not a curated answer, a form's question or the greeting).

        A generated reply that repeats an earlier generated one in the window (the same words, or one the
        start of the other, as a barge-in leaves it) is a model copying itself: a small model that sees its
        own reply twice says it again and again (a one-hour soak of the embedded 135M model fell into
        answering every question with "The thing you're asking about is"). Neither exchange (question and
        reply) stays in the window, so the next reply is written afresh. Curated answers and a form's
        questions may repeat: a form counts its questions in the history.
        """
        text = text.strip()
        if not text:
            return
        if self._messages and self._messages[-1]["role"] == "assistant":
            last = self._messages.pop()
            text = last["content"] + " " + text
            generated = generated and GENERATED in last
        copies = []
        if generated:
            words = _words(text)
            copies = [m for m in self._messages if GENERATED in m and _repeats(words, _words(m["content"]))]
        if copies:
            log.info("reply repeats an earlier one; both exchanges left out of the prompt: %r", text[:80])
            if self._messages and self._messages[-1]["role"] == "user":
                self._messages.pop()  # the question this reply answered
            for copy in copies:
                at = next(i for i, m in enumerate(self._messages) if m is copy)
                del self._messages[at]
                if at > 0 and self._messages[at - 1]["role"] == "user":
                    del self._messages[at - 1]
        else:
            message = {"role": "assistant", "content": text}
            if generated:
                message[GENERATED] = "1"
            self._messages.append(message)
        self._trim(upcoming=1)

    def clear(self) -> None:
        """Forget the conversation, keep the system prompt."""
        self._messages.clear()

    def _trim(self, upcoming: int = 0) -> None:
        """Slide the window when it holds more than ``max_turns`` user messages, counting ``upcoming``
        ones still to come."""
        for _ in range(self._dropped(upcoming)):
            self._messages.popleft()

    def _dropped(self, upcoming: int) -> int:
        """How many messages :meth:`_trim` drops from the start of the window."""
        users = sum(1 for m in self._messages if m["role"] == "user")
        over = users + upcoming > self.max_turns
        keep = self.max_turns - (self.slide if over else 0) - upcoming
        dropped = 0
        while dropped < len(self._messages) and (
            users > keep or self._messages[dropped]["role"] == "assistant"
        ):
            users -= self._messages[dropped]["role"] == "user"
            dropped += 1
        return dropped

    def slid_for_reply(self) -> list[dict[str, str]] | None:
        """When recording the reply to the question now last will slide the window: the messages every
        later prompt starts with (system, the exchanges kept, that question), so the server can evaluate
        them while the reply is spoken (:meth:`ChatLLM.warm`); else None (the next prompt starts with
        the current one, which the server already holds)."""
        if not self._messages or self._messages[-1]["role"] != "user":
            return None
        dropped = self._dropped(upcoming=1)
        if dropped == 0:
            return None
        kept = list(self._messages)[dropped:]
        return [{"role": "system", "content": self.system_prompt}, *_plain(kept)]

    def messages(self) -> list[dict[str, str]]:
        """System first, then the window (which never starts with an assistant message)."""
        return [{"role": "system", "content": self.system_prompt}, *_plain(self._messages)]


def _plain(messages: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Chat messages with only their role and content (the history's own marks left out)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def turn_messages(
    system_prompt: str, history: Sequence[Mapping[str, str]], user_text: str, context: str = ""
) -> list[dict[str, str]]:
    """One turn's chat request: the unchanging system prompt, the conversation, then the user's words
    with this turn's ``context`` (retrieved facts and how to use them) in front of them.

    What changes from turn to turn goes last because llama.cpp reuses its KV cache only for the prefix a
    prompt shares with the previous one: facts in the system message would make the embedded server
    evaluate the whole conversation again on every turn. ``history`` stays the words said, without facts.
    """
    latest = f"{context}\n\nQuestion: {user_text}" if context else user_text
    question = {"role": "user", "content": latest}
    return [{"role": "system", "content": system_prompt}, *_plain(history), question]


class _SpecialTokenFilter:
    """Removes leaked chat-template tokens from a stream of deltas, even when split across deltas."""

    def __init__(self) -> None:
        self._pending = ""
        self.ended = False  # an end-of-turn token was seen

    def feed(self, delta: str) -> str:
        if self.ended:
            return ""
        text = self._pending + delta
        self._pending = ""
        out = []
        position = 0
        for match in _SPECIAL_TOKEN.finditer(text):
            out.append(text[position : match.start()])
            position = match.end()
            if match.group() in _END_OF_TURN:
                self.ended = True
                return "".join(out)
        rest = text[position:]
        partial = _PARTIAL_SPECIAL.search(rest)
        if partial:
            # Hold back what may be the start of a special token until the next delta decides.
            self._pending = rest[partial.start() :]
            rest = rest[: partial.start()]
        out.append(rest)
        return "".join(out)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return "" if self.ended else text


def backoff_s(retry: int) -> float:
    """Delay before retry number ``retry`` (0-based): 0.25, 0.5, 1, 2, 2 s, plus up to 10 % jitter.

    The jitter is a fixed function of ``retry`` so runs are reproducible; it only needs to keep many
    sessions from retrying in lock step, not to be random.
    """
    base = min(BACKOFF_START_S * 2**retry, BACKOFF_MAX_S)
    jitter = ((retry * 0.6180339887) % 1.0) * 0.1
    return float(base * (1.0 + jitter))


def _status_reason(exc: openai.APIStatusError) -> str:
    """The server's own error message, short."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:200]
    return str(exc.message)[:200]


class ChatLLM:
    """Streams chat completions from an OpenAI-compatible endpoint at an already resolved ``base_url``."""

    def __init__(
        self,
        config: LLMConfig,
        base_url: str,
        api_key: str | None = None,
        seed: int | None = None,
        *,
        warm_prompts: bool = False,
    ) -> None:
        self.config = config
        self.base_url = base_url.rstrip("/")
        self.seed = seed
        self.warm_prompts = warm_prompts  # a local llama.cpp server: see warm()
        if api_key is None:
            api_key = self._api_key_from_env()
        self._client = AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key,
            max_retries=0,  # retries are ours: only before the first token, with our backoff
            timeout=config.timeout_s,
        )

    def _api_key_from_env(self) -> str:
        var = self.config.api_key_env
        if var is None:
            return PLACEHOLDER_API_KEY
        value = os.environ.get(var, "").strip()
        if not value:
            raise LLMError(
                f"llm.api_key_env names {var}, but {var} is not set: export {var}=<your key> "
                f"for {self.base_url}, or remove llm.api_key_env for a server that needs no key"
            )
        return value

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def warm(self, messages: Messages) -> None:
        """Have the server evaluate ``messages`` now (a one-token request), when they are the start of
        the next request (:meth:`ChatHistory.messages` between turns): llama.cpp keeps the last prompt
        in its KV cache, so the next request evaluates only what follows, even after the history window
        slid. Only with ``warm_prompts`` (the embedded server; a paid API would bill it); a failure is
        logged and otherwise ignored: the next request evaluates the prompt itself."""
        if not self.warm_prompts:
            return
        try:
            await self._client.chat.completions.create(
                model=self.config.model, messages=cast(Any, list(messages)), max_tokens=1, temperature=0.0
            )
        except openai.APIError as exc:
            log.info("LLM prompt warm-up failed (the next request evaluates it): %s", exc)

    async def stream(
        self, messages: Messages, tools: Sequence[Mapping[str, Any]] = (), run_tool: ToolRunner | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text deltas.

        Failures before the first delta of a request is yielded are retried ``max_retries`` times when
        they may pass (connection, timeout, 5xx, 429); after it, any failure raises :class:`LLMError` at
        once, so the caller keeps what it has already said.

        With ``tools`` the model may call them: each call is run by ``run_tool`` once the request has
        ended (never again on a retry), its result goes back as a ``tool`` message, and the next request
        streams on; after :data:`MAX_TOOL_ROUNDS` requests with tools, one more is made without them.
        """
        if tools and run_tool is None:
            raise ValueError("tools need a run_tool to run the model's calls")
        conversation = [dict(m) for m in messages]
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            calls: list[_ToolCall] = []
            said: list[str] = []
            offered = tools if round_ < MAX_TOOL_ROUNDS else ()
            async with contextlib.aclosing(self._request(conversation, offered, calls)) as deltas:
                async for delta in deltas:
                    said.append(delta)
                    yield delta
            if not calls:
                return
            assert run_tool is not None
            conversation.append(
                {
                    "role": "assistant",
                    "content": "".join(said) or None,
                    "tool_calls": [call.message() for call in calls],
                }
            )
            for call in calls:
                result = run_tool(call.name, call.arguments)
                log.info("tool call %s(%s) -> %r", call.name, call.arguments[:200], result[:200])
                conversation.append({"role": "tool", "tool_call_id": call.id, "content": result})

    async def _request(
        self, messages: Messages, tools: Sequence[Mapping[str, Any]], calls: list[_ToolCall]
    ) -> AsyncGenerator[str, None]:
        """One request's deltas, retried while nothing has been yielded; ``calls`` gets its tool calls."""
        attempts = 0
        while True:
            attempts += 1
            yielded = False
            try:
                async with contextlib.aclosing(self._attempt(messages, tools, calls)) as deltas:
                    async for delta in deltas:
                        yielded = True
                        yield delta
                return
            except LLMError as exc:
                exc.attempts = attempts
                if yielded or not exc.retryable:
                    raise
                if attempts > self.config.max_retries:
                    if attempts > 1:
                        exc.reason = f"gave up after {attempts} attempts: {exc.reason}"
                        exc.args = (exc.reason,)
                    raise
                delay = backoff_s(attempts - 1)
                log.warning("LLM attempt %d failed (%s); retrying in %.2f s", attempts, exc, delay)
                await asyncio.sleep(delay)

    async def _attempt(
        self, messages: Messages, tools: Sequence[Mapping[str, Any]], calls: list[_ToolCall]
    ) -> AsyncGenerator[str, None]:
        """One request; every failure becomes an :class:`LLMError` (``retryable`` where a retry may pass).
        The tool calls it streams are put in ``calls`` (emptied first: a retry starts over)."""
        calls.clear()
        loop = asyncio.get_running_loop()
        timeout = self.config.timeout_s
        deadline = loop.time() + timeout  # moves on with every token: bounds the first token and each gap
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.chat.completions.create(
                    model=self.config.model,
                    messages=cast(Any, messages),
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                    stream=True,
                    seed=openai.omit if self.seed is None else self.seed,
                    tools=cast(Any, list(tools)) if tools else openai.omit,
                )
        except TimeoutError:
            raise LLMError(self._timeout_reason(0), retryable=True) from None
        except openai.APIError as exc:
            raise self._api_error(exc, tokens=0, spoken=False) from exc

        content_type = response.response.headers.get("content-type", "")
        filter_ = _SpecialTokenFilter()
        events = 0  # chunks received
        tokens = 0  # content deltas received
        spoken = False  # something was yielded; whitespace before the first word is dropped
        iterator = aiter(response)
        try:
            if "html" in content_type:
                raise LLMError(
                    f"{self.base_url} answered with an HTML page, not an event stream: llm.base_url must "
                    "point at the OpenAI-compatible API root (usually ending in /v1)"
                )
            while not filter_.ended:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise LLMError(self._timeout_reason(tokens), retryable=not spoken) from None
                events += 1
                if tools:
                    _add_tool_calls(chunk, calls)
                delta = _content_of(chunk, self.base_url)
                if not delta:
                    continue
                tokens += 1
                deadline = loop.time() + timeout
                text = filter_.feed(delta)
                if not spoken:
                    text = text.lstrip()
                if text:
                    spoken = True
                    yield text
            tail = filter_.flush()
            if not spoken:
                tail = tail.lstrip()
            if tail:
                spoken = True
                yield tail
        except LLMError:
            raise
        except openai.APIError as exc:
            raise self._api_error(exc, tokens=tokens, spoken=spoken) from exc
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            # json.JSONDecodeError and UnicodeDecodeError are ValueErrors: garbage on the wire.
            raise LLMError(self._not_a_stream(f"{type(exc).__name__}: {str(exc)[:120]}")) from exc
        finally:
            await response.close()
        if events == 0:
            raise LLMError(self._not_a_stream(f"no stream events, content-type {content_type or 'none'}"))
        if not spoken and not calls:
            raise LLMError(f"empty reply from {self.config.model!r} at {self.base_url}")
        for call in calls:
            if not call.id or not call.name:
                raise LLMError(self._not_a_stream(f"a tool call without an id or a name: {call}"))

    def _not_a_stream(self, detail: str) -> str:
        return (
            f"{self.base_url} sent a reply that is not a chat completion stream ({detail}); check that "
            "llm.base_url is the root of an OpenAI-compatible API (usually ending in /v1)"
        )

    def _timeout_reason(self, tokens: int) -> str:
        limit = f"llm.timeout_s = {self.config.timeout_s:g} s"
        if tokens == 0:
            return f"no first token from {self.base_url} within {limit}; raise it or use a faster model"
        return f"the reply from {self.base_url} stalled for more than {limit} after {tokens} tokens"

    def _api_error(self, exc: openai.APIError, *, tokens: int, spoken: bool) -> LLMError:
        """Translate an ``openai`` error into a reason that names the fix."""
        url = self.base_url
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(self._timeout_reason(tokens), retryable=not spoken)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({cause})" if cause and str(cause) else ""
            if tokens:
                return LLMError(
                    f"the connection to {url} broke after {tokens} tokens{detail}", retryable=not spoken
                )
            return LLMError(
                f"cannot reach the LLM at {url}{detail}; check llm.base_url and that the server is running",
                retryable=True,
            )
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            reason = _status_reason(exc)
            if status in (401, 403):
                var = self.config.api_key_env
                fix = (
                    f"set {var} to a valid key for {url}"
                    if var
                    else "set llm.api_key_env to the name of the environment variable that holds the key"
                )
                return LLMError(f"{url} rejected the API key (HTTP {status}: {reason}); {fix}")
            if status == 404:
                return LLMError(
                    f"{url} answered 404 ({reason}); check llm.model ({self.config.model!r}) and that "
                    "llm.base_url ends with the API root (usually /v1)"
                )
            if status == 429:
                return LLMError(f"{url} is rate limiting (HTTP 429: {reason})", retryable=True)
            if status >= 500:
                return LLMError(f"{url} failed with HTTP {status}: {reason}", retryable=True)
            return LLMError(f"{url} refused the request with HTTP {status}: {reason}")
        # An error event inside the stream, or a body the client could not parse.
        return LLMError(f"{url} reported an error in the stream: {str(exc.message)[:200]}")


def _content_of(chunk: object, base_url: str) -> str:
    """The text delta of one chat completion chunk ("" for role-only or empty chunks)."""
    choices = getattr(chunk, "choices", None)
    if choices is None:
        raise LLMError(
            f"{base_url} sent a stream event that is not a chat completion chunk: {str(chunk)[:120]}; "
            "check that llm.base_url is an OpenAI-compatible API"
        )
    if not choices:
        return ""  # e.g. a final usage-only chunk
    delta = getattr(choices[0], "delta", None)
    content = getattr(delta, "content", None)
    return content if isinstance(content, str) else ""


@dataclass
class _ToolCall:
    """One function call of the model, assembled from the stream's fragments."""

    id: str = ""
    name: str = ""
    arguments: str = ""  # JSON text

    def message(self) -> dict[str, Any]:
        """The call as the assistant message's ``tool_calls`` entry that goes back to the model."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def _add_tool_calls(chunk: object, calls: list[_ToolCall]) -> None:
    """Add one chunk's tool-call fragments to ``calls``: a call arrives as its id and name, then pieces
    of its arguments, all under the same ``index``."""
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    for part in getattr(delta, "tool_calls", None) or []:
        index = int(getattr(part, "index", len(calls)) or 0)
        while len(calls) <= index:
            calls.append(_ToolCall())
        call = calls[index]
        call.id = getattr(part, "id", None) or call.id
        function = getattr(part, "function", None)
        call.name = getattr(function, "name", None) or call.name
        call.arguments += getattr(function, "arguments", None) or ""
