"""English (and other) text -> IPA phonemes with the espeak-ng library shipped by ``espeakng-loader``.

espeak-ng keeps global state, so every call goes through one lock; it is fast (well under a
millisecond a word), so callers on the event loop should still use a worker thread for long texts.
"""

from __future__ import annotations

import ctypes
import threading

from avatar_core.bundled import espeak_library

_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02


class _Espeak:
    def __init__(self) -> None:
        lib_path, data_path = espeak_library()
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path.parent).encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path}")
        self.voice = ""

    def phonemize(self, text: str, voice: str) -> list[str]:
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}; try 'en-us' or 'en-gb'")
            self.voice = voice
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        # Each call consumes one clause and advances the pointer; NULL means the text is used up.
        while pointer.value:
            result = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
            if result:
                clauses.append(result.decode("utf-8").strip())
        return [c for c in clauses if c]


_engine: _Espeak | None = None
_lock = threading.Lock()


def phonemize_clauses(text: str, voice: str = "en-us") -> list[str]:
    """IPA for each clause of ``text`` (espeak-ng splits at punctuation), stress marks included."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine.phonemize(text, voice)


def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA for ``text`` as one string, clauses joined by spaces."""
    return " ".join(phonemize_clauses(text, voice))
