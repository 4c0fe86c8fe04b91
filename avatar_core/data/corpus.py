"""The English text corpus the teacher TTS speaks: hand-written lines plus sentences generated from templates.

Everything here was written for dyad. Text is typed the way people type it ("It's 3:45 pm", "$12.50",
"Dr. Smith", "Room 204"); :func:`avatar_core.text.normalize.normalize` turns it into words. The domains are
the ones an avatar meets at a desk or a kiosk (libraries, clinics, shops, hotels, banks, transit), plus
small talk, questions, numbers, dates, names, addresses, exclamations, very short and very long lines.
Bilabials (p, b, m) are deliberately frequent because lip closure is the visible test of lip sync.

The text lives in data files next to this module (``corpus/pools.txt``: slot values,
``corpus/templates.txt``: template families, ``corpus/handwritten.txt``: hand-written lines); the code
here only draws from them. Generation is deterministic: each template family draws from its own
``random.Random`` seeded by the family's name, so adding a family never changes the sentences of another.
The held-out split is chosen by a SHA-256 hash of each sentence's text, so a sentence never moves between
splits when others are added.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Formatter
from typing import Literal

CORPUS_VERSION = "3"
HELDOUT_PER_MILLE = 50  # about 5% of sentences are held out

Split = Literal["train", "heldout"]
Slot = Sequence[str] | Callable[[random.Random], str]

# ---------------------------------------------------------------------------------------------------
# The data files and the slot pools
# ---------------------------------------------------------------------------------------------------


def _lines(name: str) -> list[tuple[int, str]]:
    """The lines of the corpus data file ``name`` with their numbers, without blank and '#' lines."""
    text = resources.files("avatar_core.data").joinpath("corpus", name).read_text(encoding="utf-8")
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line and not line.startswith("#")]


def _sections(name: str) -> dict[str, tuple[str, ...]]:
    """The ``[header]`` sections of the corpus data file ``name``, in file order: header -> its lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in _lines(name):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise ValueError(f"corpus/{name}:{number}: text before the first [header] line")
        else:
            current.append(line)
    return {header: tuple(lines) for header, lines in sections.items()}


_POOLS = _sections("pools.txt")
FIRST_NAMES = _POOLS["FIRST_NAMES"]
LAST_NAMES = _POOLS["LAST_NAMES"]
TITLES = _POOLS["TITLES"]
CITIES = _POOLS["CITIES"]
STREETS = _POOLS["STREETS"]
STREET_TYPES = _POOLS["STREET_TYPES"]
WEEKDAYS = _POOLS["WEEKDAYS"]
MONTHS = _POOLS["MONTHS"]
BOOKS = _POOLS["BOOKS"]
SHOP_ITEMS = _POOLS["SHOP_ITEMS"]
DISHES = _POOLS["DISHES"]
PLACES = _POOLS["PLACES"]
ADJECTIVES = _POOLS["ADJECTIVES"]
WEATHER = _POOLS["WEATHER"]
ACTIVITIES = _POOLS["ACTIVITIES"]
DEPARTMENTS = _POOLS["DEPARTMENTS"]
FEELINGS = _POOLS["FEELINGS"]


def _int(lo: int, hi: int) -> Callable[[random.Random], str]:
    return lambda rng: str(rng.randint(lo, hi))


def _price(rng: random.Random) -> str:
    kind = rng.randrange(10)
    if kind < 4:
        return f"${rng.randint(1, 99)}.{rng.choice((0, 5, 25, 49, 50, 75, 95, 99, 10, 30)):02d}"
    if kind < 6:
        return f"${rng.randint(2, 250)}"
    if kind == 6:
        return f"£{rng.randint(1, 60)}.{rng.choice((0, 20, 50, 80, 99)):02d}"
    if kind == 7:
        return f"€{rng.randint(2, 90)}"
    if kind == 8:
        return f"${rng.randint(1, 9)},{rng.randint(0, 999):03d}"
    return f"{rng.randint(5, 95)} cents"


def _small_price(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.choice((10, 15, 20, 25, 30, 50, 75))} cents"
    return f"${rng.randint(1, 5)}.{rng.choice((0, 25, 50, 75)):02d}"


def _time(rng: random.Random) -> str:
    kind = rng.randrange(9)
    hour, minute = rng.randint(1, 12), rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50, 55))
    if kind < 3:
        return f"{hour}:{minute:02d} {rng.choice(('am', 'pm', 'PM', 'AM'))}"
    if kind < 5:
        return f"{hour} {rng.choice(('am', 'pm', 'a.m.', 'p.m.'))}"
    if kind < 7:
        return f"{rng.randint(6, 23)}:{minute:02d}"
    if kind == 7:
        return f"{hour}:{minute:02d}"
    return rng.choice(("noon", "midnight", "half past two", "a quarter to five", "ten o'clock"))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ordinal_slot(rng: random.Random) -> str:
    return _ordinal(rng.randint(1, 31))


def _year(rng: random.Random) -> str:
    return str(rng.choice((rng.randint(1900, 1999), rng.randint(2000, 2031), rng.randint(1750, 1899))))


def _date(rng: random.Random) -> str:
    month, day = rng.choice(MONTHS), rng.randint(1, 28)
    kind = rng.randrange(5)
    if kind == 0:
        return f"{month} {day}"
    if kind == 1:
        return f"{month} {_ordinal(day)}"
    if kind == 2:
        return f"the {_ordinal(day)} of {month}"
    if kind == 3:
        return f"{month} {day}, {rng.randint(1990, 2030)}"
    return f"{rng.choice(WEEKDAYS)}, {month} {_ordinal(day)}"


def _phone(rng: random.Random) -> str:
    a, b, c = rng.randint(200, 989), rng.randint(0, 99), rng.randint(0, 9999)
    kind = rng.randrange(5)
    if kind == 0:
        return f"555-{c:04d}"
    if kind == 1:
        return f"({a}) 555-{c:04d}"
    if kind == 2:
        return f"1-800-555-{c:04d}"
    if kind == 3:
        return f"020 7946 {c:04d}"
    return f"+1 {a} 555 {b:02d}{rng.randint(0, 99):02d}"


def _digits(n: int) -> Callable[[random.Random], str]:
    return lambda rng: "".join(str(rng.randrange(10)) for _ in range(n))


def _big(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return f"{rng.randint(1, 9)},{rng.randint(0, 99) * 10:03d}"
    if kind == 1:
        return f"{rng.randint(10, 99)},{rng.choice((0, 500, 250, 750, 120)):03d}"
    if kind == 2:
        return f"{rng.randint(1, 9)},{rng.randint(100, 999)},000"
    return str(rng.randint(100, 999))


def _percent(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return f"{rng.randint(1, 9)}.{rng.randint(1, 9)}%"
    return f"{rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 90, 100))}%"


def _decimal(rng: random.Random) -> str:
    return f"{rng.randint(0, 12)}.{rng.randint(1, 99)}".rstrip("0")


def _address(rng: random.Random) -> str:
    return f"{rng.randint(1, 2400)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}"


def _range(rng: random.Random) -> str:
    lo = rng.randint(1, 9)
    return f"{lo}-{lo + rng.randint(1, 6)}"


def _distance(rng: random.Random) -> str:
    return rng.choice(
        (
            f"{rng.randint(2, 40)} km",
            f"{rng.randint(1, 9)}.{rng.randint(1, 9)} km",
            f"{rng.randint(2, 9)} miles",
        )
    )


def _duration(rng: random.Random) -> str:
    minutes = rng.choice((5, 10, 15, 20, 25, 30, 45))
    hours, free = rng.randint(2, 9), rng.randint(2, 50)
    return rng.choice((f"{minutes} min", f"{hours} h", f"{free} minutes", "an hour", "half an hour"))


def _weight(rng: random.Random) -> str:
    whole, tenth = rng.randint(1, 9), rng.randint(1, 9)
    grams = rng.choice((100, 250, 500, 750))
    return rng.choice(
        (f"{rng.randint(1, 25)} kg", f"{grams} g", f"{whole}.{tenth} kg", f"{rng.randint(2, 40)} pounds")
    )


def _temperature(rng: random.Random) -> str:
    return rng.choice((f"-{rng.randint(1, 20)}", str(rng.randint(0, 38))))


def _small(rng: random.Random) -> str:
    return str(rng.randint(2, 12))


def _full_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _titled(rng: random.Random) -> str:
    return f"{rng.choice(TITLES)} {rng.choice(LAST_NAMES)}"


def _email(rng: random.Random) -> str:
    user = rng.choice(("help", "info", "bookings", "support", rng.choice(FIRST_NAMES).lower()))
    domain = rng.choice(("citylibrary.org", "maplehotel.com", "example.com", "parkclinic.net", "busbay.org"))
    return f"{user}@{domain}"


SLOTS: dict[str, Slot] = {
    "first": FIRST_NAMES, "last": LAST_NAMES, "name": _full_name, "titled": _titled, "city": CITIES,
    "weekday": WEEKDAYS, "month": MONTHS, "book": BOOKS, "item": SHOP_ITEMS, "dish": DISHES,
    "place": PLACES, "adj": ADJECTIVES, "weather": WEATHER, "activity": ACTIVITIES, "dept": DEPARTMENTS,
    "feeling": FEELINGS, "price": _price, "small_price": _small_price, "time": _time, "time2": _time,
    "ordinal": _ordinal_slot, "year": _year, "date": _date, "phone": _phone, "pin4": _digits(4),
    "code5": _digits(5), "big": _big, "pct": _percent, "decimal": _decimal, "address": _address,
    "range": _range, "distance": _distance, "duration": _duration, "weight": _weight, "temp": _temperature,
    "n": _small, "m": _small, "room": _int(101, 950), "floor": lambda rng: _ordinal(rng.randint(1, 12)),
    "platform": _int(1, 14), "bus": _int(3, 99), "email": _email, "street": STREETS, "count": _int(13, 99),
}  # fmt: skip


@dataclass(frozen=True)
class Family:
    """A template family: ``count`` sentences drawn from ``patterns`` with their ``{slot}`` fields filled."""

    name: str
    count: int
    patterns: tuple[str, ...]

    def generate(self) -> Iterator[str]:
        """The family's sentences, deterministic (its RNG is seeded by its name)."""
        rng = random.Random(f"dyad-corpus:{self.name}")
        seen: set[str] = set()
        attempts = 0
        while len(seen) < self.count and attempts < self.count * 20:
            attempts += 1
            pattern = rng.choice(self.patterns)
            pieces = []
            for literal, field, _, _ in Formatter().parse(pattern):
                pieces.append(literal)
                if field:  # every occurrence gets its own draw: "{first} and {first}" names two people
                    slot = SLOTS[field]
                    pieces.append(slot(rng) if callable(slot) else rng.choice(slot))
            text = "".join(pieces)
            text = text[0].upper() + text[1:]
            if text not in seen:
                seen.add(text)
                yield text


# ---------------------------------------------------------------------------------------------------
# Template families
# ---------------------------------------------------------------------------------------------------

FAMILIES = tuple(
    Family(name, int(count), patterns)
    for header, patterns in _sections("templates.txt").items()
    for name, count in [header.split()]
)


# ---------------------------------------------------------------------------------------------------
# Hand-written lines
# ---------------------------------------------------------------------------------------------------

HANDWRITTEN = tuple(line for _, line in _lines("handwritten.txt"))


# ---------------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------------


@cache
def _all() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for text in HANDWRITTEN:
        seen.setdefault(text, None)
    for family in FAMILIES:
        for text in family.generate():
            seen.setdefault(text, None)
    return tuple(seen)


def sentences() -> list[str]:
    """All corpus sentences, deduplicated, in a fixed order (hand-written lines first, then families)."""
    return list(_all())


def is_heldout(text: str) -> bool:
    """Whether ``text`` belongs to the held-out split (a stable hash of the text, about 5%)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 1000 < HELDOUT_PER_MILLE


def split(name: Split) -> list[str]:
    """The ``train`` or ``heldout`` sentences, in corpus order; the two are disjoint."""
    if name not in ("train", "heldout"):
        raise ValueError(f"unknown corpus split {name!r}; use 'train' or 'heldout'")
    want = name == "heldout"
    return [text for text in _all() if is_heldout(text) == want]
