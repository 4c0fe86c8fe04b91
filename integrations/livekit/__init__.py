"""LiveKit: the avatar as a participant in LiveKit rooms.

``room`` (the transport: one avatar stack in one room), ``listen`` (the attended participant's media),
``attendee`` (whom to attend to), ``media`` (tracks through AVSynchronizer), ``conventions``
(``lk.agent.state``, ``lk.transcription``), ``tokens`` (least-privilege join tokens), ``join``
(``dyad livekit join``), ``worker`` and ``prewarm`` (``dyad livekit worker``), and ``avatar`` (the drop-in
``AvatarSession`` for existing livekit-agents apps).
"""
