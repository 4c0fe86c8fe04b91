"""The Session's states and the moves allowed between them, as data.

Two small machines, each a table checked in one place (:class:`StateMachine`):

* :class:`Phase`, who holds the floor: the conversation's state, which the transports show as
  ``idle | listening | thinking | speaking`` (:data:`PUBLIC`).
* :class:`Overlap`, the user's voice while the avatar holds the floor (a reply in flight): heard, then
  playback paused, then either a barge-in (the reply is interrupted and the user's turn opens) or a
  backchannel (playback resumes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Generic, TypeVar

from agent.events import AgentState

log = logging.getLogger(__name__)


class Phase(Enum):
    """Who holds the floor."""

    IDLE = "idle"  # not started, or closed
    LISTENING = "listening"  # nobody: waiting for the user
    USER_SPEAKING = "user_speaking"  # a user turn is open (recognition may start in its pauses)
    THINKING = "thinking"  # the turn is over: recognising it and preparing the reply, nothing audible yet
    SPEAKING = "speaking"  # the avatar's reply is audible


class Overlap(Enum):
    """The user's voice over the avatar's reply."""

    NONE = "none"  # none
    HEARD = "heard"  # the user talks over the avatar: a backchannel or the start of a barge-in
    PAUSED = "paused"  # long enough to hold playback, until it interrupts or turns out a backchannel


# The state each phase shows to the user (``StateChanged`` events, the kiosk, LiveKit attributes).
PUBLIC: Mapping[Phase, AgentState] = {
    Phase.IDLE: "idle",
    Phase.LISTENING: "listening",
    Phase.USER_SPEAKING: "listening",
    Phase.THINKING: "thinking",
    Phase.SPEAKING: "speaking",
}

# Every phase may close (-> IDLE); IDLE only starts. A fixed line (the greeting, ``say``) becomes audible
# from whatever phase it was asked in; a typed question ends any turn and is thought about at once.
PHASE_MOVES: Mapping[Phase, frozenset[Phase]] = {
    Phase.IDLE: frozenset({Phase.LISTENING}),
    # the user starts a turn; a typed question; a fixed line becomes audible
    Phase.LISTENING: frozenset({Phase.IDLE, Phase.USER_SPEAKING, Phase.THINKING, Phase.SPEAKING}),
    # the turn ends (or a typed question wins); a fixed line said over the user becomes audible
    Phase.USER_SPEAKING: frozenset({Phase.IDLE, Phase.THINKING, Phase.SPEAKING}),
    # the user goes on talking (the same turn); nothing to say or the reply failed silently; audible
    Phase.THINKING: frozenset({Phase.IDLE, Phase.LISTENING, Phase.USER_SPEAKING, Phase.SPEAKING}),
    # played out; a barge-in opens the user's turn; a typed question (or a turn the user ended over a
    # fixed line) replaces the reply
    Phase.SPEAKING: frozenset({Phase.IDLE, Phase.LISTENING, Phase.USER_SPEAKING, Phase.THINKING}),
}

OVERLAP_MOVES: Mapping[Overlap, frozenset[Overlap]] = {
    Overlap.NONE: frozenset({Overlap.HEARD}),
    # held long enough to pause; or the speech ended, the reply ended, or it interrupted
    Overlap.HEARD: frozenset({Overlap.PAUSED, Overlap.NONE}),
    # the reply was cancelled or ended under the user's voice (playback released, the voice still
    # over it); a backchannel (silence resumed playback) or a barge-in
    Overlap.PAUSED: frozenset({Overlap.HEARD, Overlap.NONE}),
}

S = TypeVar("S", bound=Enum)


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in the Session, never the user's doing."""


class StateMachine(Generic[S]):
    """A current state and a table of allowed moves; every change goes through :meth:`move`.

    ``on_move(previous, new)`` runs after each change. Moving to the current state is a no-op.
    """

    def __init__(
        self,
        name: str,
        initial: S,
        moves: Mapping[S, frozenset[S]],
        on_move: Callable[[S, S], None] | None = None,
    ) -> None:
        missing = [state for state in type(initial) if state not in moves]
        if missing:
            raise ValueError(f"{name}: the transition table has no row for {missing}")
        self.name = name
        self.state = initial
        self.moves = moves
        self.on_move = on_move

    def can(self, to: S) -> bool:
        """Whether ``to`` is the current state or an allowed move from it."""
        return to == self.state or to in self.moves[self.state]

    def move(self, to: S) -> bool:
        """Go to ``to``; True if the state changed. Raises :class:`IllegalTransition` for a move the
        table does not allow."""
        if to == self.state:
            return False
        if to not in self.moves[self.state]:
            allowed = ", ".join(sorted(s.name for s in self.moves[self.state]))
            raise IllegalTransition(
                f"{self.name}: {self.state.name} -> {to.name} is not an allowed move "
                f"(from {self.state.name}: {allowed}); the transition table is in agent/states.py"
            )
        previous, self.state = self.state, to
        log.debug("%s: %s -> %s", self.name, previous.name, to.name)
        if self.on_move is not None:
            self.on_move(previous, to)
        return True

    def __repr__(self) -> str:
        return f"StateMachine({self.name!r}, {self.state.name})"


__all__ = [
    "OVERLAP_MOVES",
    "PHASE_MOVES",
    "PUBLIC",
    "IllegalTransition",
    "Overlap",
    "Phase",
    "StateMachine",
]
