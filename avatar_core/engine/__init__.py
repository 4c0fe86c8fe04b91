"""The always-on avatar Engine: text in, synchronized 20 ms audio frames and video frames out.

``Engine.frames()`` is one clock-driven stream of audio and video, whether the avatar speaks, listens or
idles; ``say`` queues speech and returns a :class:`SpeechHandle`; ``interrupt`` stops all speech at the
next audio frame; ``observe_user`` feeds the listening behaviour. A voice (:class:`Voice`, in
:mod:`avatar_core.voice`) turns text into utterances; a clock (:class:`RealClock` or
:class:`VirtualClock`) paces the output. See docs/design.md for the contract with transports.
"""

from avatar_core.engine.clock import Clock, ManualTime, RealClock, VirtualClock
from avatar_core.engine.engine import Engine
from avatar_core.engine.listening import ListeningModel
from avatar_core.engine.speech import SpeechHandle
from avatar_core.voice import AudioDriver, Utterance, Voice

__all__ = [
    "AudioDriver",
    "Clock",
    "Engine",
    "ListeningModel",
    "ManualTime",
    "RealClock",
    "SpeechHandle",
    "Utterance",
    "VirtualClock",
    "Voice",
]
