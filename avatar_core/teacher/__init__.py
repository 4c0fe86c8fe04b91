"""The procedural teacher: speaking and listening motion from phonemes, prosody and the partner.

It makes the joint model's training targets, runs in the Engine's cascade mode, and is the baseline the
learned model is compared with.
"""

from avatar_core.teacher.idle import IdleLayer, compose
from avatar_core.teacher.listening import ListeningLayer, listen
from avatar_core.teacher.speaking import Phone, Prosody, speak, speech_layer

__all__ = ["IdleLayer", "ListeningLayer", "Phone", "Prosody", "compose", "listen", "speak", "speech_layer"]
