"""Whom the avatar attends to in a room with several people: the one it listens to, looks at and answers.

Policies (``--attend``):

* ``first``: the human who has been in the room longest; when they leave, the next one;
* ``speaker``: whoever speaks; the avatar switches when another human becomes the active speaker and the
  current one is not speaking (until someone speaks, the first human);
* ``identity:NAME``: only the participant ``NAME``; nobody while they are away.

Humans are standard, SIP and connector participants (what livekit-agents links to by default); agents,
egress and ingress participants are never attended. Pure bookkeeping: the room transport feeds it joins,
leaves and active-speaker updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from livekit import rtc

STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
HUMAN_KINDS = frozenset(
    {
        rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        rtc.ParticipantKind.PARTICIPANT_KIND_SIP,
        rtc.ParticipantKind.PARTICIPANT_KIND_CONNECTOR,
    }
)


@dataclass(frozen=True)
class AttendPolicy:
    """How the attendee is chosen."""

    mode: Literal["first", "speaker", "identity"] = "first"
    identity: str | None = None

    @classmethod
    def parse(cls, text: str) -> AttendPolicy:
        """``first``, ``speaker`` or ``identity:NAME``."""
        value = text.strip()
        if value == "first":
            return cls("first")
        if value == "speaker":
            return cls("speaker")
        if value.startswith("identity:") and value[len("identity:") :].strip():
            return cls("identity", value[len("identity:") :].strip())
        raise ValueError(f"{text!r} is not a policy: use 'first', 'speaker' or 'identity:NAME'")

    def __str__(self) -> str:
        return f"identity:{self.identity}" if self.mode == "identity" else self.mode


class AttendeeSelector:
    """Tracks the humans present, in joining order, and the one attended. Every method returns whether
    the attendee changed."""

    def __init__(self, policy: AttendPolicy | None = None) -> None:
        self.policy = policy or AttendPolicy()
        self.present: list[str] = []  # humans, in joining order
        self.current: str | None = None

    def joined(self, identity: str, kind: rtc.ParticipantKind.ValueType = STANDARD) -> bool:
        """A participant joined (or was already there when the avatar arrived)."""
        if kind not in HUMAN_KINDS or identity in self.present:
            return False
        self.present.append(identity)
        return self._settle()

    def left(self, identity: str) -> bool:
        """A participant left."""
        if identity not in self.present:
            return False
        previous = self.current
        self.present.remove(identity)
        if self.current == identity:
            self.current = None
        self._settle()
        return previous != self.current

    def speaking(self, identities: list[str]) -> bool:
        """The active speakers, loudest first."""
        if self.policy.mode != "speaker":
            return False
        humans = [i for i in identities if i in self.present]
        if not humans or self.current in humans:
            return False
        previous, self.current = self.current, humans[0]
        return previous != self.current

    def _settle(self) -> bool:
        previous = self.current
        if self.policy.mode == "identity":
            self.current = self.policy.identity if self.policy.identity in self.present else None
        elif self.current is None and self.present:
            self.current = self.present[0]
        return previous != self.current
