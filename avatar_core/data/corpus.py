"""The English text corpus the teacher TTS speaks: hand-written lines plus sentences generated from templates.

Everything here was written for dyad. Text is typed the way people type it ("It's 3:45 pm", "$12.50",
"Dr. Smith", "Room 204"); :func:`avatar_core.text.normalize.normalize` turns it into words. The domains are
the ones an avatar meets at a desk or a kiosk (libraries, clinics, shops, hotels, banks, transit), plus
small talk, questions, numbers, dates, names, addresses, exclamations, very short and very long lines.
Bilabials (p, b, m) are deliberately frequent because lip closure is the visible test of lip sync.

Generation is deterministic: each template family draws from its own ``random.Random`` seeded by the
family's name, so adding a family never changes the sentences of another. The held-out split is chosen by
a SHA-256 hash of each sentence's text, so a sentence never moves between splits when others are added.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from string import Formatter
from typing import Literal

CORPUS_VERSION = "3"
HELDOUT_PER_MILLE = 50  # about 5% of sentences are held out

Split = Literal["train", "heldout"]
Slot = Sequence[str] | Callable[[random.Random], str]

# ---------------------------------------------------------------------------------------------------
# Slot pools
# ---------------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "Maria", "James", "Aisha", "Wei", "Priya", "Mateo", "Olga", "Kwame", "Hiroshi", "Fatima", "Liam",
    "Sofia", "Noah", "Emma", "Omar", "Chloe", "Diego", "Ingrid", "Ravi", "Yuki", "Beatrice", "Patrick",
    "Bianca", "Malik", "Moana", "Pablo", "Brigitte", "Benjamin", "Mabel", "Bruno", "Penelope", "Abdul",
    "Camila", "Dmitri", "Elena", "Farah", "George", "Hannah", "Isaac", "Jasmine", "Kenji", "Lucia",
    "Mohammed", "Nadia", "Oscar", "Paloma", "Quentin", "Rosa", "Samuel", "Tamika", "Umar", "Valentina",
    "William", "Ximena", "Yusuf", "Zoe", "Bob", "Mike", "Amber", "Pippa", "Barbara", "Phillip", "Marcus",
    "Brenda", "Simone", "Theo", "Gemma", "Jorge", "Thandiwe", "Siobhan", "Maeve", "Imani", "Pam", "Boris",
    "Bridget", "Martin", "Beth", "Peter", "Miriam", "Abigail", "Jamal", "Leona", "Vikram", "Astrid",
    "Joshua", "Ruth", "Gabriel", "Mei", "Arjun", "Harriet", "Xavier", "Ophelia", "Nikolai", "Esther",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Nguyen", "Patel", "Garcia", "O'Brien", "Kowalski", "Okafor", "Tanaka", "Rossi",
    "Campbell", "Bishop", "Palmer", "Baptiste", "Mbeki", "Lopez", "Brown", "Thompson", "Abernathy",
    "Bloom", "Pemberton", "Chen", "Kim", "Singh", "Haddad", "Ivanova", "Jensen", "Kapoor", "Lindqvist",
    "Moreau", "Novak", "Osei", "Petrov", "Quinn", "Ramirez", "Schmidt", "Torres", "Vasquez", "Whitmore",
    "Yamamoto", "Zimmerman", "Bamford", "Popescu", "McPherson", "Montgomery", "Baker", "Porter", "Webb",
    "Mbatha", "Fitzgerald", "Delacroix", "Hopper", "Beaumont", "Mendoza", "Sparrow", "Bellamy", "Park",
    "Chambers", "Empson", "Brooks", "Maddox", "Pope", "Gupta", "Morales", "Bauer", "Ahmed", "Murphy",
)  # fmt: skip
TITLES = ("Dr.", "Mr.", "Mrs.", "Ms.")
CITIES = (
    "Boston", "Madrid", "Mumbai", "Memphis", "Berlin", "Birmingham", "Portland", "Pittsburgh", "Brisbane",
    "Toronto", "Chicago", "Lisbon", "Nairobi", "Osaka", "Melbourne", "Bristol", "Phoenix", "Dublin",
    "Baltimore", "Montreal", "Budapest", "Prague", "Vienna", "Seattle", "Manchester", "Bombay Beach",
)  # fmt: skip
STREETS = (
    "Maple", "Pine", "Oak", "Elm", "Baker", "Bishop", "Park", "Market", "Mill", "Beacon", "Broad", "Bridge",
    "Cherry", "Church", "Harbor", "Hamilton", "Juniper", "Lamb", "Meadow", "Mulberry", "Plum", "Poplar",
    "Primrose", "Queen", "Riverside", "Temple", "Washington", "Willow", "Bramble", "Peabody",
)  # fmt: skip
STREET_TYPES = ("St.", "Ave.", "Road", "Lane", "Blvd.", "Street", "Avenue", "Way", "Drive", "Place")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)  # fmt: skip
BOOKS = (
    "The Moonlit Bay", "A Map of Small Places", "Paper Boats", "The Baker's Promise",
    "Blue Mountain Mornings", "The Brass Compass", "Maple and Plum", "Seven Bridges", "The Patient Gardener",
    "Bread and Pebbles",
    "The Last Lamplighter", "Beneath the Pier", "Thirty Summers", "The Vanishing Museum", "Purple Smoke",
)  # fmt: skip
SHOP_ITEMS = (
    "apples", "bananas", "paper towels", "maple syrup", "plum jam", "baby wipes", "batteries", "pumpkins",
    "peppermint tea", "bread rolls", "blueberries", "bamboo plates", "mangoes", "notebooks", "umbrellas",
    "pillows", "boots", "paintbrushes", "potatoes", "pasta", "lemons", "beach towels", "pencils",
    "sandwiches", "pizza boxes", "broccoli", "peppers", "yogurt pots", "water bottles", "vitamins",
)  # fmt: skip
DISHES = (
    "pumpkin soup", "mushroom pie", "beef burger", "spinach lasagna", "plum crumble", "fish and chips",
    "vegetable curry", "bean burrito", "pepperoni pizza", "blueberry muffin", "lamb stew", "club sandwich",
    "pancakes", "apple pie", "tomato bisque", "sushi platter", "baked potato", "chocolate brownie",
)  # fmt: skip
PLACES = (
    "library", "pharmacy", "post office", "museum", "bank", "bus station", "train station", "bakery",
    "hospital", "clinic", "hotel", "supermarket", "swimming pool", "playground", "town hall", "bookshop",
    "parking lot", "police station", "public toilet", "barber shop", "gym", "market", "embassy", "airport",
)  # fmt: skip
ADJECTIVES = (
    "beautiful", "brilliant", "amazing", "perfect", "wonderful", "marvelous", "lovely", "peaceful",
    "magnificent", "splendid", "pleasant", "bumpy", "busy", "bright", "miserable", "massive", "tiny",
)  # fmt: skip
WEATHER = (
    "sunny", "rainy", "windy", "foggy", "freezing", "humid", "pleasant", "stormy", "mild", "muggy", "cold",
    "boiling hot", "damp", "breezy",
)  # fmt: skip
ACTIVITIES = (
    "baking bread", "playing the piano", "hiking in the mountains", "painting", "bird watching", "biking",
    "swimming", "reading mystery books", "playing basketball", "making pottery", "jogging by the pier",
    "learning Spanish", "camping", "building model ships", "visiting museums", "watching movies",
    "gardening", "playing board games",
    "treasure hunting", "watching television", "mountain biking", "photography", "cooking pumpkin soup",
)  # fmt: skip
DEPARTMENTS = (
    "billing", "pharmacy", "maternity", "radiology", "pediatrics", "customer support", "membership",
    "lost property", "reception", "leisure",
    "television repairs", "accounts", "parcel pickup", "complaints", "returns",
)  # fmt: skip
FEELINGS = ("happy", "pleased", "sorry", "glad", "thrilled", "delighted", "surprised", "embarrassed")


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

FAMILIES = (
    Family(
        "library",
        260,
        (
            "Your books are due back on {date}.",
            "The library opens at {time} on {weekday}s.",
            "You can borrow up to {n} books at a time with a standard card.",
            "The late fee is {small_price} a day, but you can pay it online.",
            "Room {room} is booked for the study group from {time} to {time2}.",
            "Your library card number is {code5}{pin4}.",
            "The book you reserved, {book}, is ready at the front desk.",
            "{book} is checked out until {date}, would you like to join the waiting list?",
            "There are {count} people ahead of you on the waiting list for {book}.",
            "The children's story time starts at {time} in Room {room}.",
            "Printing costs {small_price} a page for black and white.",
            "The Wi-Fi password is printed on the back of your membership card, {first}.",
            "Please keep your voice down, the quiet floor is the {floor}.",
            "I'm sorry, {first}, but the maps and atlases can't leave the building.",
            "You've borrowed {n} books and {m} movies, and the first one is due on {date}.",
            "The author talk with {name} begins at {time}, and it's free for members.",
            "Could you spell your last name for me? Is it {last}?",
            "Is {book} by {name} available in large print?",
            "We have {count} copies of {book} across {n} branches.",
            "The branch on {address} closes at {time} on {weekday}.",
            "You can renew your books by phone at {phone}.",
            "The computer lab on the {floor} floor is open until {time}.",
        ),
    ),
    Family(
        "clinic",
        260,
        (
            "{titled} can see you at {time} on {weekday}.",
            "Please arrive {n} minutes before your appointment on {date}.",
            "Take {n} tablets twice a day with food, and finish the whole pack.",
            "The copay for this visit is {price}.",
            "Please call {phone} if you need to reschedule.",
            "Your blood test results will be ready in {range} days.",
            "The pharmacy is on the {floor} floor, next to the elevators.",
            "{titled} is running about {count} minutes behind, I'm so sorry about the wait.",
            "Your prescription for {count} mg of ibuprofen is ready for pickup.",
            "Please fill in this form and bring it back to the front desk, {first}.",
            "Has your temperature been above {temp} degrees?",
            "Your next checkup is booked for {date} at {time}.",
            "The {dept} department is in Building {n}, Room {room}.",
            "Do you have any allergies to penicillin or other medicines?",
            "Your weight today is {weight}, which is about the same as last time.",
            "Please press the call button if you need the nurse, {titled} will be here soon.",
            "The clinic on {address} is open from {time} to {time2}.",
            "Is this the best number to reach you, {phone}?",
            "Babies and toddlers can be seen by {titled} on {weekday} mornings.",
            "We'll book a follow-up with {titled} in {range} weeks.",
            "Your insurance covers {pct} of the cost of the scan.",
        ),
    ),
    Family(
        "shop",
        310,
        (
            "That comes to {price}.",
            "Those {item} are {pct} off this week.",
            "Your change is {price}, and here's your receipt.",
            "We close at {time} on {weekday}s.",
            "You'll find the {item} in aisle {n}, just past the bakery.",
            "Would you like a paper bag? It's {small_price}.",
            "The {item} are {price} each, or {n} for {price}.",
            "We're out of {item}, but we'll have more by {weekday}.",
            "Do you have a membership card? You'd save {price} today.",
            "I can give you a refund of {price} if you have the receipt.",
            "The special today is {dish} for {price}.",
            "One {dish} and a small coffee, that's {price} please.",
            "Can I pay for the {item} by card, or is it cash only?",
            "The store on {address} has more {item} in stock.",
            "This box of {item} weighs {weight}, so it ships for {price}.",
            "Buy one bag of {item}, get the second at {pct} off.",
            "Your order #{code5} will be ready for pickup after {time}.",
            "Is the {dish} made with peanuts or other nuts?",
            "Pop your {item} on the belt and I'll scan them for you, {first}.",
            "Our {item} come from a family farm about {distance} away.",
            "Delivery takes {range} business days and costs {price}.",
            "Barnes & Bloom sells {item} for {price}.",
        ),
    ),
    Family(
        "hotel",
        230,
        (
            "Your room is {room} on the {floor} floor.",
            "Breakfast is served from {time} to {time2} in the main dining room.",
            "Checkout is at {time}, but we can hold your bags until {time2}.",
            "Your reservation for {n} nights is confirmed, {titled}.",
            "The pool and the gym are open from {time} to {time2}.",
            "The room rate is {price} a night, including breakfast.",
            "Welcome back, {titled}! We've upgraded you to a suite on the {floor} floor.",
            "The airport shuttle leaves every {duration} from the main entrance.",
            "Could I see a photo ID and the card you booked with, {first}?",
            "Room service is available until {time}, just dial {n} from your room phone.",
            "The museum is only {distance} from the hotel, about a {duration} walk.",
            "Your booking reference is {code5}, and it's under the name {name}.",
            "Would you prefer a room with a balcony or a bathtub?",
            "Late checkout until {time} costs an extra {price}.",
            "The parking garage on {address} charges {price} a day.",
            "Please email {email} if you need a receipt for your stay.",
            "Your taxi to {city} will be here at {time}.",
            "The minibar snacks are {small_price} to {price} each.",
        ),
    ),
    Family(
        "bank",
        230,
        (
            "Your balance is {price}.",
            "The transfer of {price} went through on {date}.",
            "The interest rate on this savings account is {pct}.",
            "Is this about the account ending in {pin4}?",
            "Please enter your {n}-digit PIN and press the green button.",
            "The branch on {address} opens at {time} on {weekday}s.",
            "A payment of {price} to {name} is pending.",
            "Your mortgage payment of {price} is due on the {ordinal}.",
            "We've blocked the card ending in {pin4}, and a new one will arrive in {range} days.",
            "The monthly fee is {price}, but it's waived if your balance stays above {price}.",
            "You can withdraw up to {price} a day from the cash machine.",
            "Please call {phone} to report a lost or stolen card.",
            "The exchange rate today is {decimal} to the pound.",
            "Your loan of {price} will be paid off by {year}.",
            "Could you confirm your date of birth and the first line of your address, {first}?",
            "{titled} from the mortgage team will call you back at {time}.",
            "There were {n} payments this month, the biggest one was {price}.",
            "Our budgeting app shows you spent {pct} of your income on bills.",
        ),
    ),
    Family(
        "transit",
        270,
        (
            "The next train to {city} leaves at {time} from platform {platform}.",
            "The number {bus} bus is running about {n} minutes late.",
            "A single ticket costs {price}, and a day pass is {price}.",
            "The trip is about {distance} and takes roughly {duration}.",
            "Please board at gate #{platform}, the flight to {city} is boarding now.",
            "The {time} to {city} has been cancelled, I'm very sorry.",
            "Change at {city} for the express, it's platform {platform}.",
            "The last bus back from {city} leaves at {time}.",
            "Mind the gap between the train and the platform.",
            "This is the {bus} to {city}, calling at {street} Park and {street} Bridge.",
            "Your seat is in coach {n}, seat {count}.",
            "Bikes are allowed on the train before {time} and after {time2}.",
            "The ferry to {city} takes {duration} and leaves every {duration}.",
            "The parking lot at the station costs {price} for {n} hours.",
            "Tickets for kids under {n} are {pct} off.",
            "Flight {count}{n} to {city} is delayed until {time}.",
            "The tram stops at {address} every {duration}.",
            "Please tap your card when you get on and when you get off the bus.",
            "The shuttle from {city} airport is {price} one way.",
            "The speed limit on this road is {count} km/h.",
        ),
    ),
    Family(
        "kiosk",
        160,
        (
            "Touch the screen to begin, {first}.",
            "Your order number is {count}, please wait by the pickup counter.",
            "Your total is {price}, please insert your card or tap your phone.",
            "Please scan the barcode on your ticket, then press OK.",
            "There are {n} people ahead of you, the wait is about {duration}.",
            "Your parking ticket shows {n} hours, that's {price}.",
            "Please take your receipt, and have a pleasant {weekday}!",
            "To check in for your appointment with {titled}, enter your date of birth.",
            "Please choose a language, or say your question out loud.",
            "The printer is out of paper, please ask a member of staff for help.",
            "Your boarding pass for the {time} flight to {city} is printing now.",
            "Please place your {item} in the bagging area.",
            "Your key card for Room {room} is ready, please take it from the slot below.",
            "You can also pay with cash, the machine gives change up to {price}.",
        ),
    ),
    Family(
        "small_talk",
        270,
        (
            "How was your {weekday}, {first}?",
            "The weather has been so {weather} in {city} this week.",
            "I moved to {city} in {year}, and I've never looked back.",
            "Have you tried the {dish} at the place on {street} Street?",
            "My neighbor {first} has taken up {activity}.",
            "I spent the whole weekend {activity}, it was {adj}.",
            "Do you like {activity}? I've always wanted to try it.",
            "It's {weather} again, isn't it?",
            "My brother lives in {city}, it's about {distance} from here.",
            "I'm {feeling} to hear that, {first}.",
            "We should get together for {dish} some time.",
            "{first} and {first} are getting married in {month}!",
            "I've been {activity} every {weekday} since {year}.",
            "Did you watch the match last night? It ended {n} to {m}!",
            "The {place} near my place has a {adj} view of the bay.",
            "It's been a {adj} {weekday}, thanks for asking.",
            "I'm off to {city} next {weekday} for my cousin's birthday.",
            "My grandmother was born in {city} in {year}.",
            "Apparently it'll be {weather} and about {temp} degrees tomorrow.",
        ),
    ),
    Family(
        "questions",
        270,
        (
            "Do you know where the nearest {place} is?",
            "Could you tell me when the {place} opens on {weekday}?",
            "What time does the number {bus} bus leave?",
            "Is there a {place} near {address}?",
            "How much are the {item}?",
            "Can I book an appointment with {titled} for {weekday}?",
            "Would you like to pay by card or in cash?",
            "Is {first} {last} still working at the {place}?",
            "Which floor is the {dept} department on?",
            "How long does it take to get to {city} by train?",
            "Could I speak to someone in {dept}, please?",
            "Are the {item} really {pct} off, or is the sign wrong?",
            "Why is the {place} closed on {weekday}?",
            "Where can I buy a ticket to {city}?",
            "When is the {dish} back on the menu?",
            "What's the best way to get to {address} from here?",
            "May I ask who's calling, please?",
            "Have you got a table for {n} at {time}?",
            "Would it be possible to move my booking to {date}?",
            "Who's the manager at the {place} on {street} Road?",
            "Do you deliver to {city}, and how much does it cost?",
        ),
    ),
    Family(
        "numbers",
        230,
        (
            "There are {big} people on the waiting list.",
            "The population of {city} is about {big}.",
            "Last night the temperature dropped to {temp} degrees.",
            "The parcel weighs {weight}.",
            "The final score was {count} to {n}.",
            "The bridge is {big} meters long.",
            "We sold {big} tickets in the first week.",
            "The museum has {big} paintings, but only {count} are on show.",
            "Prices went up by {pct} last year.",
            "Add {decimal} cups of milk and {n} eggs.",
            "The building has {count} floors and {big} windows.",
            "It's {distance} to the next petrol station.",
            "The hike takes {range} hours and climbs about {big} feet.",
            "About {pct} of our members borrow e-books.",
            "The recipe needs {weight} of potatoes and {n} tablespoons of butter.",
            "The answer is {decimal}, not {decimal}.",
            "We planted {big} trees along {street} Avenue.",
            "The board is {count} cm wide and {count} cm tall.",
            "That's number {count} on the list.",
            "Page {count}, paragraph {n}, please.",
        ),
    ),
    Family(
        "dates",
        200,
        (
            "My birthday is on {date}.",
            "The festival runs from {date} to {date}.",
            "She was born in {year}.",
            "We opened on {date}.",
            "The bridge was built in {year} and repaired in {year}.",
            "Your membership expires on {date}.",
            "The meeting is on the {ordinal}, at {time}.",
            "The sale starts on {weekday} the {ordinal} and ends on {date}.",
            "I've lived here since {year}.",
            "The museum reopens on {date} after the repairs.",
            "The deadline for applications is {date}, at {time}.",
            "The library was founded in {year} by {name}.",
            "Our anniversary is on {date}, so I booked a table for {time}.",
            "The {ordinal} of {month} falls on a {weekday} this year.",
        ),
    ),
    Family(
        "phones",
        130,
        (
            "You can reach us at {phone}.",
            "My number is {phone}.",
            "Text {code5} to confirm your booking.",
            "Please call {phone} between {time} and {time2}.",
            "The number for the {dept} team is {phone}.",
            "Your verification code is {pin4}.",
            "If you get cut off, call me back on {phone}.",
            "For bookings, call {phone} or email {email}.",
            "Your PIN is {pin4}, please don't share it with anyone.",
        ),
    ),
    Family(
        "names",
        170,
        (
            "{name} is here to see {titled}.",
            "This is {name}, our new {dept} manager.",
            "{titled} will be with you in a minute.",
            "Nice to meet you, {first}! I'm {first}.",
            "The parcel is addressed to {name} at {address}.",
            "Is {name} in the waiting room?",
            "{first}, meet my colleague {name}.",
            "I've got a message for {titled} from {name}.",
            "The reservation is under {last}, spelled the usual way.",
            "Please welcome our speaker, {titled}, from {city}!",
            "{first} {last} and {first} {last} have both signed the form.",
        ),
    ),
    Family(
        "addresses",
        160,
        (
            "We're at {address}, next to the {place}.",
            "Please send it to {address}, Apt. {n}.",
            "The new branch is on {address}, Suite {room}.",
            "Turn left on {street} Ave. and we're the {ordinal} building on the right.",
            "The office moved to {address} in {year}.",
            "Deliver it to {address}, {city}.",
            "Our warehouse is at {address}, about {distance} out of town.",
            "The {place} is on the corner of {street} St. and {street} Avenue.",
            "Is it {address} or {address}? I always mix them up.",
        ),
    ),
    Family(
        "exclamations",
        130,
        (
            "What a {adj} {weekday}!",
            "Congratulations, {first}!",
            "Happy birthday, {first}!",
            "Oh my goodness, that {dish} was {adj}!",
            "Welcome to {city}, {first}!",
            "Bravo, {first}, that was {adj}!",
            "Wow, {price} for a bag of {item}!",
            "Thank you so much, {titled}!",
            "Good luck with the exam, {first}!",
            "Oh no, I've left my umbrella on the {bus} bus!",
        ),
    ),
    # /ʒ/ is the rarest English phoneme in ordinary text; this family keeps it frequent enough to learn.
    Family(
        "rare_sounds",
        170,
        (
            "It was a pleasure to meet you, {first}, enjoy your {weekday}.",
            "Usually the {place} is quiet on {weekday}s, but today is unusual.",
            "Please measure the {item} before you put them in the beige box.",
            "The leisure center has a new pool, a sauna and a massage room.",
            "We park the car in the garage behind the {place}.",
            "What a pleasant surprise! What's the occasion, {first}?",
            "The television in Room {room} isn't working, I'll send someone to fix it.",
            "The decision about your {dept} claim will be made by {date}.",
            "Is there a newer version of {book} with bigger print?",
            "There's a treasure hunt for the kids at the {place} on {weekday}.",
            "{titled} made the decision to close the {place} at {time}.",
            "Sorry for the confusion, {first}, the casual dress code starts on {weekday}.",
            "The exposure on this photo of the {place} is a bit too bright.",
            "Our division moved to the {floor} floor last {month}.",
            "My vision is a bit blurry, could you read the price of the {item} for me?",
            "For your leisure, the lounge has magazines, board games and a big television.",
            "Usually I take the {bus} bus, but today I'm measuring the flat in {city}.",
            "In conclusion, {first}, the {item} are a genuine bargain at {price}.",
        ),
    ),
    # Semicolons, colons, dashes and ellipses: rare in service text, but the model reads them as pauses.
    Family(
        "prosody_marks",
        160,
        (
            "The {place} is closed today; the one on {street} Street is open until {time}.",
            "Please bring two things: your ID and your {dept} letter.",
            "{titled} — the one who works in {dept} — will call you back at {time}.",
            "Hmm… I think the {item} are in aisle {n}.",
            "Here's what I found: {book} is due back on {date}.",
            "The {bus} bus is late again; it should be here in {duration}.",
            "Your total comes to {price} — would you like a receipt?",
            "Well… the next train to {city} leaves at {time}.",
            "One thing to remember: the {place} closes early on {weekday}s.",
            "{first} booked the table; {first} will bring the {dish}.",
            "Good news: your parcel arrives on {date}!",
            "The room — Room {room}, on the {floor} floor — is ready for you.",
        ),
    ),
    Family(
        "short",
        160,
        (
            "Thanks, {first}!",
            "See you {weekday}.",
            "Room {room}, please.",
            "Good morning, {first}.",
            "Platform {platform}.",
            "Hello, {titled}.",
            "It's {price}.",
            "Aisle {n}.",
            "Bye, {first}!",
            "At {time}?",
            "{first}, please.",
            "On {weekday}?",
            "{item}, please.",
        ),
    ),
    Family(
        "long",
        290,
        (
            "Good {weekday} morning, {first}, your appointment with {titled} has been moved to {time}, so "
            "please "
            "bring your insurance card, your list of medicines and any papers from the hospital, and arrive "
            "about {n} minutes early so we can update your file.",
            "If you'd like to borrow {book}, I can put you on the waiting list today, and we'll send a "
            "message to "
            "{phone} as soon as a copy comes back, which is usually within {range} weeks.",
            "The number {bus} bus from {street} Park to {city} has been replaced by a shuttle this weekend "
            "because "
            "of the bridge repairs, so please allow an extra {duration} for your journey and check the board "
            "before you board.",
            "Your room on the {floor} floor has a balcony with a view of the bay, breakfast is served from "
            "{time} "
            "in the main dining room, and the pool, the spa and the gym are open until {time2} every "
            "evening.",
            "I'm afraid the card ending in {pin4} was declined, but you can pay the {price} in cash, use "
            "another "
            "card, or ask me to keep the {item} behind the counter until {weekday} while you sort it out.",
            "When my family moved to {city} back in {year}, we lived above a bakery on {street} Street, "
            "and every "
            "morning the smell of warm bread and blueberry muffins came up through the floorboards.",
            "Before you leave, {first}, please remember to pick up your prescription from the pharmacy on "
            "the "
            "{floor} floor, take {n} tablets every morning with breakfast, and book a follow-up for {date}.",
            "The museum's new exhibition about {activity} opens on {date}, tickets are {price} for adults "
            "and "
            "free for children under {n}, and members can bring a guest for {pct} off the usual price.",
            "We've checked the system, {titled}, and your package left our warehouse on {date}, it's now "
            "at the "
            "depot on {address}, and the driver should drop it off between {time} and {time2} tomorrow.",
            "Thanks for calling the {dept} team at the {place}, all of our staff are busy helping other "
            "members "
            "at the moment, so please stay on the line or call back at {phone} after {time}.",
            "My friend {first} spent most of last summer {activity} in the hills above {city}, and she "
            "says the "
            "views were so beautiful that she's planning to go back with her brother in {month}.",
            "Please make sure your bags are packed, your passport is in your pocket and your boarding pass "
            "is on "
            "your phone, because the flight to {city} leaves at {time} and the gate closes {count} minutes "
            "before.",
        ),
    ),
)


# ---------------------------------------------------------------------------------------------------
# Hand-written lines
# ---------------------------------------------------------------------------------------------------

HANDWRITTEN = (
    # Short replies and backchannels
    "Yes, please.", "No, thank you.", "Of course!", "Sure thing.", "Maybe later.", "Absolutely!",
    "Me too.", "Not bad.", "Bye for now!", "Hmm, good point.", "Perfect, thanks.", "Be right back.",
    "Mm-hmm.", "Just a moment.", "Pardon me?", "Beautiful!", "My pleasure.", "Bless you!", "Wait, what?",
    "Got it.", "Please sit.", "Happy holidays!", "Bon appetit!", "Big news!", "Maybe tomorrow.",
    "Keep the change.", "Welcome back!", "Sounds good.", "Well done!", "Boo!", "Hop on.", "Let me check.",
    "Thanks a bunch.", "Not at all.", "Nice to meet you.", "Mind the step.", "Bravo!", "Whoops, sorry!",
    "Really? Wow.", "Oh, I see.", "Anything else?", "Go ahead.", "Take care.", "Excuse me!",
    "Pleasure to help.", "Bring a pen.", "Push, don't pull.", "Stop right there!", "Move it, move it!",
    # Greetings and desk talk
    "Hi there! How can I help you today?",
    "Good afternoon, welcome to the Maple Street Library.",
    "Hello, and welcome to Bayside Medical. Do you have an appointment?",
    "Hi, I'm the virtual assistant for this building. What can I do for you?",
    "Please take a number and have a seat, someone will be with you shortly.",
    "I'm sorry, I didn't quite catch that. Could you say it again?",
    "Let me look that up for you, it'll only take a moment.",
    "Is there anything else I can help you with before you go?",
    "Thank you for your patience, we really appreciate it.",
    "I'm afraid that's not something I can do, but a member of staff can.",
    "Just so I'm sure I understood: you'd like to change your booking, not cancel it?",
    "Would you mind spelling that for me, one letter at a time?",
    "Please bear with me while the system updates.",
    "It was a pleasure to meet you. Have a beautiful evening!",
    "Both options are fine; it's really up to you.",
    "My apologies, the printer jammed. Let me try once more.",
    "Before we begin, may I have your member number?",
    "Please remember to bring your passport and a proof of address.",
    "The bathrooms are past the lifts, on the left.",
    "Please don't leave bags unattended anywhere in the building.",
    # Small talk
    "Lovely weather we're having, isn't it?",
    "Did you have a nice weekend?",
    "I can't believe it's already the end of the month.",
    "My cat knocked a plant off the windowsill this morning. What a mess!",
    "Honestly, the best part of my day is the first cup of coffee.",
    "We went to the beach and built an enormous sand castle with a moat.",
    "I've been meaning to try that new bakery by the park.",
    "The kids played board games until midnight.",
    "Do you prefer mountains or beaches for a holiday?",
    "Autumn is my favorite season; the leaves turn amber and maroon.",
    "My brother bought a bright purple bicycle with a basket.",
    "I tried baking bagels, but they came out as flat as pancakes.",
    "We saw a pod of humpback whales off the point!",
    "Our neighbor's puppy barks at every passing bus.",
    "Have you been to the pumpkin patch this year?",
    "That movie was much better than the book, which is rare.",
    "I usually measure the flour, but this time I guessed.",
    "The garage door makes a strange noise in the cold.",
    "Her vision for the garden is a beige and emerald maze.",
    "It's unusual to see so much sunshine in the middle of winter.",
    "The treasure was buried beneath a massive oak tree.",
    "He gave me a casual nod and went back to his newspaper.",
    "They enjoyed leisure time by the azure pool.",
    "The boy took a huge bite of the juicy plum.",
    "Judge Jenkins enjoys jazz on the jukebox.",
    "Children chose cheese and cherries for lunch.",
    "Thirty thousand thrilled fans thanked the team.",
    "Their father gathered the clothes together.",
    "Which wheel was wobbling when the wagon went west?",
    "Oysters and a noisy boy spoiled the royal voyage.",
    "The cowboy found a brown mouse in his boot.",
    "Pure, cool water flows through the few new tubes.",
    "A sugar cookie looks good with a cup of tea.",
    "The thing I love about singing is the feeling of ringing in my ears.",
    "Hang the long yellow string along the young vines.",
    "Vivian's vivid violet van waved past the vineyard.",
    "Zebras and bees buzz lazily at the zoo.",
    "She sells seashells by the shore on Sundays.",
    "Harry hid his hat behind the heavy hedge.",
    "Little lambs leap along the lovely hills.",
    "Rob ran around the red barn in the rain.",
    "Yes, you may use your yellow yo-yo in the yard.",
    "Quick, grab the big black bag from the back.",
    "Perhaps Peter packed the purple paper plates.",
    "Bobby's baby brother babbled by the bubbling brook.",
    "Mom made marmalade, muffins and mint mousse for me.",
    "Put the pumpkin pie back in the blue box, please.",
    "My mum bought a map of Bombay at the bazaar.",
    "Maybe Pam and Bob can bring the maple cupcakes.",
    "Bubbles popped above the bumpy pebble path.",
    "Mabel mopped the marble floor by the bay window.",
    "Please pass me the butter, the bread and the blackberry jam.",
    "A big brown bear ambled beside the babbling stream.",
    "The band played, the crowd clapped, and the bubbly mood lasted past midnight.",
    "Bring a map, a pump and a spare tube for the bike trip.",
    "Paper, plastic, metal and glass belong in the blue bin.",
    "Be patient; the web page may take a minute to appear.",
    "Tom, Pam and Ben made lemon sorbet for the summer picnic.",
    "The lamp by my bed keeps blinking, maybe the bulb is broken.",
    "Members may bring up to two guests to the pool.",
    "Please don't bump the piano; it's been tuned for tomorrow's performance.",
    # Questions
    "What's the fastest way to the airport from here?",
    "Could you recommend a good place for breakfast nearby?",
    "Do I need a membership card to use the computers?",
    "Is the museum free on the first Sunday of the month?",
    "Where do I pay for parking?",
    "Can I bring my dog into the shop?",
    "Which bus goes past the hospital?",
    "Why is the machine beeping at me?",
    "How do I reset my password?",
    "Are you open on public holidays?",
    "Who should I talk to about a refund?",
    "Did anybody hand in a black umbrella?",
    "Would you like me to print a map for you?",
    "Have you been here before, or is this your first visit?",
    "Shall I book you a taxi, or would you prefer to walk?",
    "Is it possible to bring the baby's pram on the bus?",
    "How many pages can I print for free each day?",
    "What's the difference between the blue plan and the premium plan?",
    "Could you remind me what time the pharmacy closes?",
    "Is breakfast included, or is it extra?",
    # Numbers, dates, money and abbreviations, typed as people type them
    "It's 3:45 pm, so you still have time.",
    "The total is $12.50, including tax.",
    "Dr. Smith will see you in Room 204.",
    "Mr. and Mrs. Pemberton have booked the table for 8 pm.",
    "Ms. Okafor's flight lands at 6:15 am on the 21st.",
    "The tickets cost £25 each, or £40 for two.",
    "Your refund of €18.99 will appear in 3-5 days.",
    "We're at 221 Baker St., just past the bakery.",
    "The meeting room fits about 12 people, e.g. a small class.",
    "Bring ID, i.e. a passport or a driving license.",
    "We stock pens, paper, stamps, etc.",
    "It's the Panthers vs. the Bombers on Saturday.",
    "Please go to Gate No. 7 for the flight to Madrid.",
    "Call us at 555-0199 or email help@citylibrary.org.",
    "The shop is open 9 am to 5:30 pm, Monday to Saturday.",
    "The building was finished in 1999 and renovated in 2015.",
    "The river is 1,250 km long.",
    "The temperature tonight will drop to -4 degrees.",
    "The 2nd and 3rd floors are closed for painting.",
    "About 45% of our visitors come by bus.",
    "That'll be 99 cents, please.",
    "Our office is at 42 Pine Ave., Suite 300.",
    "The marathon is 42.2 km, about 26 miles.",
    "The baby weighed 3.4 kg at birth.",
    "The box is 30 cm by 20 cm.",
    "The walk takes about 25 min.",
    "Rock & Roll Museum tickets are $22.",
    "You're number 14 in the queue.",
    "The score was 3-2 after extra time.",
    "We're open from 9:00 to 17:30 on weekdays.",
    "Lunch is served at noon, and dinner at 7 pm.",
    "The bill comes to $1,049.75.",
    "St. Mary's Church is on Bishop St.",
    "Dr. Patel's number is (617) 555-0143.",
    "My flight is at 6:05 am, so I'll leave at 4.",
    "Only 1 in 10 people get it right the first time.",
    "A million thanks for the help!",
    "We had about 3,000,000 visitors in 2023.",
    "Prices start at $5 and go up to $500.",
    "The 1st prize is $1,000 and a trip to Paris.",
    # Semicolons, colons, dashes and trailing off: prosody marks the model reads as tokens
    "The pharmacy is closed today; the one on Market Street is open until nine.",
    "I'd love to help; let me just find the right form.",
    "We tried the bus; it was packed, so we walked.",
    "The museum is free for members; everyone else pays at the door.",
    "Bring two things: your passport and your booking number.",
    "Here's the plan: lunch at the pub, then a boat trip on the bay.",
    "One more thing: please switch off your phone during the performance.",
    "The choice is simple: the blue plan or the premium plan.",
    "Remember: the last bus leaves before midnight.",
    "Two options remain: wait for the plumber, or call the emergency number.",
    "The bakery — the one by the bridge — makes the best bagels in town.",
    "Your appointment — sorry, let me check — is on Monday morning.",
    "I booked the big room — the one with the piano — for the party.",
    "It's a beautiful building — built by a famous Boston architect.",
    "Well, I'm not sure… maybe next week?",
    "I thought I'd left my umbrella on the bus, but… here it is!",
    "So the printer is broken again…",
    "Hmm… let me think about that for a moment.",
    "Maybe… just maybe, we'll make it on time.",
    "The lift is broken; please use the stairs by the main entrance.",
    "Please note: the library will be closed on public holidays.",
    "My favorites are simple: bread, butter and a pot of mint tea.",
    "He paused — then smiled — and opened the big brown box.",
    "Members may borrow books; visitors may only browse.",
    "Be careful: the floor by the pool is slippery.",
    "Oh, and one more thing… the parking ticket machine only takes coins.",
    "I can book the room for you; would two o'clock suit you?",
    "Everything's ready: the maps, the tickets and the picnic basket.",
    "She said yes — after a very long pause — and we all cheered!",
    "We'll miss you, Pam; come back and visit us soon.",
    # Longer lines
    "If you have any questions about your bill, the billing team is available by phone during the week, "
    "and you can also send them a message through the patient portal at any time.",
    "I'd recommend the number twelve bus, it stops right outside the museum and it's much quicker than "
    "walking, especially with all those bags.",
    "The library has a quiet reading room on the top floor, a maker space in the basement with a 3D "
    "printer, and a play area for babies and toddlers next to the picture books.",
    "Please place your palm flat on the scanner, keep it still for a moment, and wait for the green light "
    "before you remove your hand.",
    "As a member, you can book the meeting rooms up to two weeks in advance, borrow laptops for the day, "
    "and print up to fifty pages a month for free.",
    "When the alarm sounds, please leave by the nearest exit, don't use the lifts, and meet your group at "
    "the assembly point by the main gate.",
    "We baked more than a hundred blueberry muffins, a mountain of maple biscuits and a pumpkin pie big "
    "enough for the whole neighborhood, and everybody still wanted more.",
    "My grandmother always said the best way to make a friend is to bring them bread, ask about their day, "
    "and listen properly to the answer without looking at your phone.",
    "Because the bridge is closed for repairs until the end of the month, the buses to the harbor will "
    "use the temporary stop on Market Street, just behind the big bookshop.",
    "Before you sign the paperwork, please make sure your name, your address and your phone number are "
    "spelled correctly, because we'll use them to send your bank card and your PIN.",
)  # fmt: skip


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
