"""English text normalisation: numbers, times, money, abbreviations and symbols -> words.

Typed text ("Dr. Smith paid $12.50 at 3:45 pm.") becomes what a person would say ("Doctor Smith paid
twelve dollars and fifty cents at three forty-five PM."), so the phonemizer never guesses. The prosody
punctuation ``. , ? ! ; : — …`` is kept (the model reads it as tokens); periods that only marked an
abbreviation are removed, except where the abbreviation also ends the sentence.

The rules run in a fixed order, most specific first (emails, times, phone numbers, money, units) so the
generic number rules at the end only see plain numbers. Readings follow American usage: "one hundred
twenty", years in pairs ("nineteen ninety-nine", "two thousand five"), phone numbers digit by digit with a
pause (comma) between groups, room and flight numbers in pairs ("Room 204" -> "room two oh four").
"""

from __future__ import annotations

import re
from collections.abc import Callable

# ---------------------------------------------------------------------------------------------------
# Number words
# ---------------------------------------------------------------------------------------------------

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def cardinal(n: int) -> str:
    """``123`` -> "one hundred twenty-three"; negative numbers get "minus"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for size, name in _SCALES:
        if n >= size:
            high, rest = divmod(n, size)
            return f"{cardinal(high)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """``21`` -> "twenty-first"."""
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def digits(text: str) -> str:
    """``"0143"`` -> "zero one four three" (every digit; other characters dropped)."""
    return " ".join(_ONES[int(ch)] for ch in text if ch.isdigit())


def paired(n: int) -> str:
    """Years and room numbers read in pairs: 1999 -> "nineteen ninety-nine", 2005 -> "two thousand
    five", 1805 -> "eighteen oh five", 204 -> "two oh four", 1900 -> "nineteen hundred"."""
    if n < 100 or n >= 10000 or (2000 <= n < 2010) or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' + _ONES[low] if low < 10 else cardinal(low)}"


def number(text: str) -> str:
    """A typed number (``"1,250"``, ``"-3"``, ``"42.2"``, ``".5"``) in words."""
    text = text.replace(",", "").replace("−", "-")
    sign = ""
    if text.startswith("-"):
        sign, text = "minus ", text[1:]
    whole, _, fraction = text.partition(".")
    words = cardinal(int(whole)) if whole else "zero"
    if fraction:
        words += " point " + digits(fraction)
    return sign + words


# ---------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------

_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]

# A period that ended an abbreviation also ends the sentence when the text ends or a capital follows.
_SENTENCE_FOLLOWS = r"(?=\s*$|\s+[\"“(]?[A-Z])"


def _keep_end(match: re.Match[str], words: str) -> str:
    """``words``, plus a period when the abbreviation's period also ended the sentence."""
    rest = match.string[match.end() :]
    ends = rest.strip() == "" or re.match(r"\s+[\"“(]?[A-Z]", rest) is not None
    return words + "." if ends and match.group(0).endswith(".") else words


_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_WEEKDAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|Mon|Tue|Tues|Wed|Thu|Thurs|Fri|Sat|Sun"

# ---- cleanup ---------------------------------------------------------------------------------------

_CLEANUP: list[_Rule] = [
    (re.compile(r"[‘’`´]"), "'"),
    (re.compile(r"\.{3,}|…"), "…"),
    (re.compile(r"\s*(?:--+|—|―)\s*"), " — "),
    (re.compile(r"(?<=[^\s\d])\s+[–-]\s+(?=[^\s\d])|(?<=\d)\s+[–-]\s+(?=[^\s\d$£€])"), " — "),
    (re.compile(r"[\u00a0\u2009\u202f]"), " "),
]

# ---- emails and web addresses ------------------------------------------------------------------------

_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_DOMAIN = re.compile(r"\b((?:www\.)?[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|co|uk|info|ai))\b")


def _dotted(text: str) -> str:
    parts = [("w w w" if part.lower() == "www" else part) for part in text.split(".")]
    return " dot ".join(parts)


def _email(match: re.Match[str]) -> str:
    return f"{_dotted(match.group(1))} at {_dotted(match.group(2))}"


# ---- times ---------------------------------------------------------------------------------------------

_SUFFIX = r"(?:[ap]\.\s?m\.|[ap]m\b|noon\b|midnight\b)"
_CLOCK = re.compile(rf"\b(\d{{1,2}}):(\d{{2}})(?::\d{{2}})?(?:\s*({_SUFFIX}))?", re.IGNORECASE)
_HOUR = re.compile(rf"\b(\d{{1,2}})\s*({_SUFFIX})", re.IGNORECASE)


def _suffix_words(suffix: str | None) -> str:
    if not suffix:
        return ""
    s = suffix.lower().replace(".", "").replace(" ", "")
    return {"am": " AM", "pm": " PM"}.get(s, f" {s}")  # espeak-ng spells capitals: "eɪ ɛm"


def _clock(match: re.Match[str]) -> str:
    hour, minute, suffix = int(match.group(1)), int(match.group(2)), match.group(3)
    if hour > 24 or minute > 59:
        return match.group(0)
    if minute == 0:
        tail = "" if suffix else (" o'clock" if 0 < hour <= 12 else " hundred")
    elif minute < 10:
        tail = f" oh {_ONES[minute]}"
    else:
        tail = f" {cardinal(minute)}"
    return _keep_end(match, cardinal(hour) + tail + _suffix_words(suffix))


def _hour(match: re.Match[str]) -> str:
    hour = int(match.group(1))
    if hour > 24:
        return match.group(0)
    return _keep_end(match, cardinal(hour) + _suffix_words(match.group(2)))


# ---- phone numbers -------------------------------------------------------------------------------------

_GROUPS = re.compile(r"(?<![\w.,$£€/-])(\+?\(?\d+\)?(?:(?:[ -]|\) ?)\(?\d+\)?)+)(?![\w%$£€]|[.,]\d)")


def _is_year(group: str) -> bool:
    return len(group) == 4 and 1100 <= int(group) <= 2099


def _phone(match: re.Match[str]) -> str:
    text = match.group(1)
    groups = re.findall(r"\d+", text)
    total = sum(len(g) for g in groups)
    structured = "-" in text or "(" in text or text.startswith("+") or len(groups) >= 3
    if total < 7 or not structured or max(len(g) for g in groups) > 4:
        return text
    if len(groups) == 2 and all(_is_year(g) for g in groups):
        return text  # a range of years
    plus = "plus " if text.startswith("+") else ""
    return plus + ", ".join(digits(g) for g in groups)


# ---- money ---------------------------------------------------------------------------------------------

_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents")}  # fmt: skip
_MONEY = re.compile(
    r"([$£€])\s?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(\d{1,2}))?(?:\s?(thousand|million|billion)\b)?"
)
_CENTS_SIGN = re.compile(r"\b(\d+)\s?¢")


def _money(match: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[match.group(1)]
    whole = int(match.group(2).replace(",", ""))
    fraction, scale = match.group(3), match.group(4)
    if scale:  # "$2.5 million" -> "two point five million dollars"
        amount = number(match.group(2) + (f".{fraction}" if fraction else ""))
        return f"{amount} {scale} {many}"
    cents = int(fraction.ljust(2, "0")) if fraction else 0
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


# ---- percentages and units -----------------------------------------------------------------------------

_NUM = r"[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_PERCENT = re.compile(rf"(?<![\w.])({_NUM})\s?%")
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"), "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"), "kg": ("kilogram", "kilograms"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mg": ("milligram", "milligrams"),
    "ml": ("milliliter", "milliliters"),
    "g": ("gram", "grams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "ft": ("foot", "feet"),
    "min": ("minute", "minutes"), "mins": ("minute", "minutes"), "h": ("hour", "hours"),
    "hr": ("hour", "hours"), "hrs": ("hour", "hours"), "sec": ("second", "seconds"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}  # fmt: skip
_UNIT = re.compile(
    rf"(?<![\w.])({_NUM})\s?("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![\w/])(\.?)"
)


def _unit(match: re.Match[str]) -> str:
    value, unit, period = match.group(1), match.group(2), match.group(3)
    one, many = _UNITS[unit]
    words = f"{number(value)} {one if value == '1' else many}"
    return _keep_end(match, words) if period else words


# ---- abbreviations -------------------------------------------------------------------------------------

_TITLES = {"Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor",
           "Capt": "Captain", "Sgt": "Sergeant", "Rev": "Reverend", "Mt": "Mount", "Ft": "Fort"}  # fmt: skip
_PLAIN = {
    "Ave": "Avenue", "Rd": "Road", "Blvd": "Boulevard", "Ln": "Lane", "Ct": "Court", "Hwy": "Highway",
    "Apt": "Apartment", "Dept": "Department", "Jr": "Junior", "Sr": "Senior", "approx": "approximately",
    "etc": "et cetera", "vs": "versus", "Bldg": "Building", "Co": "Company", "Inc": "Incorporated",
    "Ltd": "Limited", "Corp": "Corporation", "Tel": "Telephone", "ext": "extension", "Jan": "January",
    "Feb": "February", "Mar": "March", "Apr": "April", "Aug": "August", "Sep": "September",
    "Sept": "September", "Oct": "October", "Nov": "November", "Dec": "December",
}  # fmt: skip
_CAPITALISED_BEFORE = re.compile(r"(?:^|[\s(])[A-Z][\w'-]*\s+$")


def _st_or_dr(match: re.Match[str]) -> str:
    """``St.``/``Dr.`` after a capitalised word and not before a name is a street: "Bishop St."."""
    before = match.string[: match.start()]
    after = match.string[match.end() :]
    sentence_start = before.strip() == "" or before.rstrip().endswith((".", "!", "?"))
    street = (
        _CAPITALISED_BEFORE.search(before) is not None
        and not sentence_start
        and not re.match(r"\s+[A-Z][a-z]", after)
    ) or (re.search(r"\d\s+$|\d\w*\s+[A-Z][\w'-]*\s+$", before) is not None)
    abbreviation = match.group(1)
    if street:
        return _keep_end(match, "Street" if abbreviation == "St" else "Drive")
    return "Saint" if abbreviation == "St" else "Doctor"


_ABBREVIATIONS: list[_Rule] = [
    (re.compile(r"\b(St|Dr)\.(?!\w)"), _st_or_dr),
    (re.compile(r"\b(" + "|".join(_TITLES) + r")\.(?=\s)"), lambda m: _TITLES[m.group(1)]),
    (re.compile(r"\b(" + "|".join(_PLAIN) + r")\.(?!\w)"), lambda m: _keep_end(m, _PLAIN[m.group(1)])),
    (re.compile(r"\be\.\s?g\.(?!\w)", re.IGNORECASE), lambda m: _keep_end(m, "for example")),
    (re.compile(r"\bi\.\s?e\.(?!\w)", re.IGNORECASE), lambda m: _keep_end(m, "that is")),
    (re.compile(r"\b(?:No|no|Nos)\.\s?(?=#?\d)"), "number "),
    (re.compile(r"\bU\.S\.A?\.?(?!\w)"), lambda m: "U S A" if "A" in m.group(0) else "U S"),
    (re.compile(r"\bvs\b"), "versus"),
]

# ---- numbers in context --------------------------------------------------------------------------------

_ORDINAL = re.compile(r"\b(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b({_MONTHS})\s+(\d{{1,2}})\b(?![:.,]?\d)")
_WEEKDAY_RANGE = re.compile(rf"\b({_WEEKDAYS})\s?[-–]\s?({_WEEKDAYS})\b")
_RANGE = re.compile(r"(?<![\w.,-])(\d+(?:\.\d+)?)\s?[-–]\s?(\d+(?:\.\d+)?)(?![\w.]\d|\d)")
_PAIRED_CUE = re.compile(
    r"\b(room|suite|apartment|apt|gate|platform|flight|bus|route|highway|channel|unit|building)"
    r"\s+(#\s?)?(\d{3,4})\b(?![.,]\d)",
    re.IGNORECASE,
)
_STREET_NUMBER = re.compile(
    r"\b(\d{3,4})(?=\s+(?:[A-Z][\w'-]*\s+)+(?:Street|Avenue|Road|Lane|Boulevard|Drive|Way|Place|Court|Square"
    r"|Terrace|Highway|Parkway|Crescent|Close)\b)"
)
_DIGIT_CUE = re.compile(
    r"\b(code|pin|passcode|password|reference|ref|account|card|order|ticket|booking|confirmation|ending in"
    r"|text|dial|extension|id|zip|postcode|number|serial|tracking|member|membership)"
    r"((?:\s+(?:number|no|code|is|was|are|in|of|#))*\s*#?\s*)(\d{4,})\b(?![.,]\d)",
    re.IGNORECASE,
)
_LONG_DIGITS = re.compile(r"(?<![\w.,])(0\d+|\d{7,})(?![\w]|[.,]\d)")
_HASH = re.compile(r"#\s?(?=\d)")
_VERSION = re.compile(r"(?<![\w.])(\d+(?:\.\d+){2,})(?![\w.]\d)")
_FRACTIONS = {"1/2": "one half", "1/3": "one third", "2/3": "two thirds", "1/4": "one quarter",
              "3/4": "three quarters", "24/7": "twenty-four seven"}  # fmt: skip
_FRACTION = re.compile(r"(?<![\w/])(\d+)/(\d+)(?![\w/])")
_NUMBER = re.compile(r"(?<![\w])([-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-−]?\.\d+)")
_NUMBER_LETTERS = re.compile(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)")
_DECADE = re.compile(r"(?<![\w.])'?(\d{1,3}0)'?s\b")
_WEEKDAY_NAMES = {day[:3]: day for day in _WEEKDAYS.split("|") if len(day) > 4}


def _number_token(match: re.Match[str]) -> str:
    text = match.group(1)
    plain = text.lstrip("-−")
    negative = plain != text
    # A minus only means "minus" at the start of a word, not inside "3-5" (ranges are handled earlier).
    if negative and match.start() > 0 and not match.string[match.start() - 1].isspace():
        return match.string[match.start()] + number(plain)
    if plain.isdigit() and len(plain) == 4 and 1100 <= int(plain) <= 2099:
        return ("minus " if negative else "") + paired(int(plain))
    return number(text)


def _decade(match: re.Match[str]) -> str:
    """ "1990s" -> "nineteen nineties", "'80s" -> "eighties"."""
    words = paired(int(match.group(1)))
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _weekday(name: str) -> str:
    return _WEEKDAY_NAMES.get(name[:3], name) if len(name) <= 5 else name


def _fraction(match: re.Match[str]) -> str:
    key = f"{match.group(1)}/{match.group(2)}"
    if key in _FRACTIONS:
        return _FRACTIONS[key]
    return f"{number(match.group(1))} over {number(match.group(2))}"


_CONTEXT: list[_Rule] = [
    (_VERSION, lambda m: " point ".join(number(p) for p in m.group(1).split("."))),
    (_DECADE, _decade),
    (_ORDINAL, lambda m: ordinal(int(m.group(1).replace(",", "")))),
    (
        _MONTH_DAY,
        lambda m: f"{m.group(1)} {ordinal(int(m.group(2)))}" if 1 <= int(m.group(2)) <= 31 else m[0],
    ),
    (_WEEKDAY_RANGE, lambda m: f"{_weekday(m.group(1))} to {_weekday(m.group(2))}"),
    (_PAIRED_CUE, lambda m: f"{m.group(1)} {'number ' if m.group(2) else ''}{paired(int(m.group(3)))}"),
    (_STREET_NUMBER, lambda m: paired(int(m.group(1)))),
    (_DIGIT_CUE, lambda m: f"{m.group(1)}{m.group(2).replace('#', ' number ')}{digits(m.group(3))}"),
    (_LONG_DIGITS, lambda m: digits(m.group(1))),
    (_HASH, "number "),
    (_FRACTION, _fraction),
    (_RANGE, lambda m: f"{m.group(1)} to {m.group(2)}"),
    (_NUMBER_LETTERS, " "),
    (_NUMBER, _number_token),
    (re.compile(r"\d+"), lambda m: f" {digits(m.group(0))} "),  # whatever is left, e.g. glued to letters
]

# ---- symbols and final tidying -------------------------------------------------------------------------

_SYMBOLS: list[_Rule] = [
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"\s*@\s*"), " at "),
    (re.compile(r"(?<=\w)\s*\+\s*(?=\w)"), " plus "),
    (re.compile(r"\s*=\s*"), " equals "),
    (re.compile(r"(?<=\w)/(?=\w)"), " "),
    (re.compile(r"\s~\s?(?=\w)|^~"), " about "),
    (re.compile(r"[*_|<>{}\[\]\\^+#=~/]"), " "),
    (re.compile(r"\s+([.,?!;:…])"), r"\1"),
    (re.compile(r"([,;:])(?=[^\s\d.,?!;:…—])"), r"\1 "),
    (re.compile(r"\s{2,}"), " "),
]


def _apply(rules: list[_Rule], text: str) -> str:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def normalize(text: str) -> str:
    """Typed English -> speakable words, keeping the prosody punctuation ``. , ? ! ; : — …``."""
    original = text = text.strip()
    text = _apply(_CLEANUP, text)
    text = _EMAIL.sub(_email, text)
    text = _DOMAIN.sub(lambda m: _dotted(m.group(1)), text)
    text = _CLOCK.sub(_clock, text)
    text = _HOUR.sub(_hour, text)
    text = _GROUPS.sub(_phone, text)
    text = _MONEY.sub(_money, text)
    text = _CENTS_SIGN.sub(lambda m: f"{m.group(1)} {'cent' if m.group(1) == '1' else 'cents'}", text)
    text = _PERCENT.sub(lambda m: f"{number(m.group(1))} percent", text)
    text = _UNIT.sub(_unit, text)
    text = _apply(_ABBREVIATIONS, text)
    text = _apply(_CONTEXT, text)
    text = _apply(_SYMBOLS, text).strip()
    return text[:1].upper() + text[1:] if text[:1].islower() and original[:1].isdigit() else text
