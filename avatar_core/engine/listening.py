"""Listening from the joint model: the partner's recent conditioning -> the avatar's listening motion.

The teacher's listening layer (:mod:`avatar_core.teacher.listening`) always runs; when the persona asks
for the model (``behaviour.listening: model``) and a checkpoint is loaded, :class:`ModelListening`
replaces it with the joint model's listening mode, generated a block ahead in its own worker thread.

Letters in shape comments: T frames, D = MOTION_DIM, P = PARTNER_DIM.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

import numpy as np

from avatar_core.motion import FloatArray, resample
from avatar_core.partner import PartnerFrame, partner_vector
from avatar_core.speech.features import MODEL_FPS
from avatar_core.workers import compute_pool, due_in

log = logging.getLogger(__name__)


class ListeningModel(Protocol):
    """The joint model's listening mode: partner conditioning (T, P) at 40 fps -> motion (T, D) at 40 fps."""

    def listen(self, partner: FloatArray, key: str = "") -> FloatArray: ...


class ModelListening:
    """Live listening motion from the joint model, generated one block ahead.

    While the avatar is in block ``k`` (``BLOCK_S`` of video time), block ``k + 1`` is generated from the
    partner's last ``HISTORY_S`` (what follows now is assumed to stay as it is now), so reactions lag the
    partner by at most one block, about the delay of a human backchannel. A block's first frames blend
    from the last frame shown, so the face never jumps between blocks.
    """

    BLOCK_S = 0.5
    HISTORY_S = 3.0
    BLEND_FRAMES = 3

    def __init__(self, model: ListeningModel, fps: float) -> None:
        self.model = model
        self.fps = fps
        self._history: deque[tuple[float, list[float]]] = deque()
        self._blocks: dict[int, FloatArray] = {}
        self._scheduled: set[int] = set()
        self._shown: FloatArray | None = None
        self._block = -1
        self._blend_from: FloatArray | None = None
        self._into = 0  # frames shown from the current block
        self._pool = compute_pool("dyad-listen")
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def observe(self, vt: float, partner: PartnerFrame | None) -> None:
        """Record the partner's conditioning at video time ``vt``."""
        self._history.append((vt, partner_vector(partner)))
        while self._history and self._history[0][0] < vt - self.HISTORY_S - self.BLOCK_S:
            self._history.popleft()

    def next_block(self, vt: float) -> int | None:
        """The block to generate now, if it is not under way already."""
        k = int(vt // self.BLOCK_S) + 1
        return None if k in self._scheduled else k

    def schedule(self, k: int) -> list[tuple[float, list[float]]]:
        """Mark block ``k`` as under way; the partner history it is made from (on the event loop)."""
        self._scheduled.add(k)
        return list(self._history)

    def run_ahead(self, vt: float) -> None:
        """Start generating the next block in the worker thread (never waits for it)."""
        if self._closed:
            return
        k = self.next_block(vt)
        if k is None:
            return
        history = self.schedule(k)

        async def run() -> None:
            try:
                loop = asyncio.get_running_loop()
                # due when block k starts showing, so a reply someone waits for goes first
                due = max(0.0, k * self.BLOCK_S - vt)
                done = await loop.run_in_executor(self._pool, self._make_due, due, k, history)
            except RuntimeError:  # the pool shut down with the engine
                return
            except Exception:
                log.exception("listening motion failed; the teacher's listening layer fills in")
                return
            self.install(*done)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _make_due(
        self, due: float, k: int, history: list[tuple[float, list[float]]]
    ) -> tuple[int, FloatArray]:
        with due_in(due):
            return self.make(k, history)

    def make(self, k: int, history: list[tuple[float, list[float]]]) -> tuple[int, FloatArray]:
        """Generate block ``k`` from ``history`` (blocking: runs in a worker thread)."""
        start, end = k * self.BLOCK_S - self.HISTORY_S, (k + 1) * self.BLOCK_S
        times = start + np.arange(round((end - start) * MODEL_FPS)) / MODEL_FPS  # (T,) at 40 fps
        stamps = np.array([t for t, _ in history]) if history else np.zeros(0)
        rows = np.array([v for _, v in history], np.float32).reshape(len(history), -1)
        if rows.size:
            pick = np.clip(np.searchsorted(stamps, times, side="right") - 1, 0, len(rows) - 1)
            partner = rows[pick]
        else:
            partner = np.tile(np.array(partner_vector(None), np.float32), (times.size, 1))
        motion40 = self.model.listen(partner, key=str(k))  # (T, D)
        block = resample(motion40, MODEL_FPS, self.fps)[-round(self.BLOCK_S * self.fps) :]
        return k, block

    def install(self, k: int, block: FloatArray) -> None:
        """Keep a finished block (called on the event loop)."""
        self._blocks[k] = block
        for old in [b for b in self._blocks if b < k - 1]:
            del self._blocks[old]
        self._scheduled = {b for b in self._scheduled if b >= k - 1}

    def frame(self, vt: float, fallback: FloatArray) -> FloatArray:
        """The model's listening frame at ``vt``, or ``fallback`` while its block is not ready."""
        k = int(vt // self.BLOCK_S)
        block = self._blocks.get(k)
        if block is None:
            if self._block >= 0 and self._shown is not None:
                return self._shown  # a late block: hold the last learned frame rather than jump
            self._shown = fallback
            return fallback
        i = min(len(block) - 1, round((vt - k * self.BLOCK_S) * self.fps))
        if k != self._block:  # first frame shown from this block (it may arrive late)
            self._block, self._blend_from, self._into = k, self._shown, 0
        frame: FloatArray = block[i]
        if self._blend_from is not None and self._into < self.BLEND_FRAMES:
            w = (self._into + 1) / (self.BLEND_FRAMES + 1)
            frame = w * frame + (1 - w) * self._blend_from
        self._into += 1
        self._shown = frame
        return frame

    def forget_shown(self) -> None:
        """The avatar spoke in between: the next block blends from wherever the crossfade takes it."""
        self._shown = None
        self._block = -1

    async def aclose(self) -> None:
        """Stop generating blocks and shut the worker thread down."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
