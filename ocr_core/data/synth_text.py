"""Word lists and procedural texts for the synthetic data generator (no downloads).

Every text is printable ASCII (``chr(32)``..``chr(126)``), the character set of PaddleOCR's
``en_dict.txt`` plus space, so an English recognizer dictionary always covers it.
"""

from __future__ import annotations

import numpy as np

CHARSET = "".join(chr(c) for c in range(32, 127))
REC_MAX_LEN = 25  # PaddleOCR's max_text_length for the English rec configs

COMMON = (
    "the and for with from this that your our new best good fresh open daily home city world "
    "free hot cold fast easy love life time food wine art music shop store street park north "
    "south east west central great little old royal golden silver green blue red white black "
    "happy lucky star sun moon river lake hill garden house room service center office public "
    "private welcome please thank you today only more less price value quality family friends "
    "coffee tea bread cake ice cream pizza pasta burger grill kitchen bar club hall book print "
    "photo studio design repair wash car bike bus train taxi stop exit entrance parking hotel"
).split()
STREETS = (
    "Main Oak Maple Cedar Pine Elm Park Lake Hill River Church Market High King Queen Mill Station "
    "Bridge Spring Forest Sunset Washington Lincoln Jefferson Franklin Madison Highland Victoria "
    "Albert George Harbor Meadow Willow Chestnut Walnut Cherry Birch Ash Union Liberty Grove Ridge "
    "Valley Center Broad Canal Castle Abbey Baker Fleet Oxford Cambridge York Kent Dover"
).split()
STREET_SUFFIX = "St Street Ave Avenue Rd Road Blvd Lane Ln Dr Drive Way Plaza Square Ct Place".split()
SHOP = (
    "CAFE BAKERY PHARMACY HOTEL BAR PIZZA SUSHI BOOKS FLOWERS MARKET DELI GROCERY BANK PARKING "
    "EXIT ENTRANCE OPEN CLOSED SALE STOP TAXI POLICE HOSPITAL SCHOOL MUSEUM LIBRARY GARAGE SALON "
    "BARBER TOYS SHOES FASHION COFFEE TEA BURGER NOODLES BISTRO PUB INN MOTEL GYM DENTIST CINEMA "
    "THEATRE FOOD DRINKS LAUNDRY TICKETS INFO TOILETS POST OFFICE PETS JEWELRY OPTICS BUTCHER"
).split()
ITEMS = (
    "Milk Bread Eggs Butter Cheese Apples Bananas Coffee Tea Sugar Rice Pasta Tomatoes Chicken Beef "
    "Yogurt Juice Water Soda Chips Cookies Cereal Soap Shampoo Toothpaste Batteries Onions Potatoes "
    "Carrots Lettuce Salmon Tuna Flour Honey Jam Oil Vinegar Salt Pepper Oranges Grapes Lemons "
    "Bagels Muffin Croissant Latte Espresso Sandwich Salad Soup Noodles Ham Bacon Sausage Beans "
    "Corn Peas Spinach Garlic Ginger Avocado Napkins Foil Candles Cola Lemonade Cheddar Mozzarella"
).split()
ITEM_ADJ = "Organic Fresh Large Small Whole Lowfat Frozen Sliced Green Red Sweet Dark Greek Spicy Mini".split()
STORE_A = "FRESH SUNNY QUICK CITY CORNER GOLDEN HAPPY GREEN FAMILY DAILY MAPLE UNION METRO".split()
STORE_B = "MART MARKET STORE GROCERY FOODS DELI SHOP CAFE PHARMACY KITCHEN".split()
TOWNS = "Springfield Riverside Fairview Georgetown Salem Madison Clinton Franklin Ashland Dover".split()
STATES = "CA NY TX IL WA OR MA FL GA OH".split()
SLOGANS = (
    "Thank you", "Come again", "Have a nice day", "Thank you, come again", "Open 24/7",
    "Since 1987", "Best in town", "No refunds", "Keep this receipt",
)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _case(rng: np.random.Generator, s: str, p_upper: float = 0.3, p_lower: float = 0.15) -> str:
    u = rng.random()
    if u < p_upper:
        return s.upper()
    if u < p_upper + p_lower:
        return s.lower()
    return s


def price(rng: np.random.Generator, high: int = 100) -> str:
    """A price like ``12.50``, ``$3.99`` or ``1,250.00``."""
    if rng.random() < 0.06:
        value = f"{int(rng.integers(1, 10))},{int(rng.integers(0, 1000)):03d}.{int(rng.integers(0, 100)):02d}"
    else:
        value = f"{int(rng.integers(0, high))}.{int(rng.integers(0, 100)):02d}"
    return ("$" + value) if rng.random() < 0.2 else value


def date(rng: np.random.Generator) -> str:
    d, m, y = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(2015, 2027))
    return _pick(rng, (f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y % 100:02d}"))


def clock(rng: np.random.Generator) -> str:
    h, m = int(rng.integers(0, 24)), int(rng.integers(0, 60))
    if rng.random() < 0.5:
        return f"{h:02d}:{m:02d}"
    return f"{(h % 12) or 12}:{m:02d} {'AM' if h < 12 else 'PM'}"


def phone(rng: np.random.Generator) -> str:
    a, b, c = int(rng.integers(200, 999)), int(rng.integers(100, 999)), int(rng.integers(0, 10000))
    return _pick(rng, (f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"Tel. {b}-{c:04d}"))


def street(rng: np.random.Generator) -> str:
    return f"{_pick(rng, STREETS)} {_pick(rng, STREET_SUFFIX)}"


def item_name(rng: np.random.Generator) -> str:
    name = _pick(rng, ITEMS)
    u = rng.random()
    if u < 0.3:
        name = f"{_pick(rng, ITEM_ADJ)} {name}"
    elif u < 0.38:
        name = f'"{_pick(rng, ITEM_ADJ)}" {name}'
    elif u < 0.45:
        name = f"{name} {int(rng.integers(1, 5)) * 250}g"
    elif u < 0.5:
        name = f"{name}, {_pick(rng, ('2 pk', '6 pk', 'each', 'lb', 'kg'))}"
    return _case(rng, name, 0.5, 0.1)


def store_name(rng: np.random.Generator) -> str:
    if rng.random() < 0.2:
        return f"{_pick(rng, STREETS).upper()}'S {_pick(rng, STORE_B)}"
    return f"{_pick(rng, STORE_A)} {_pick(rng, STORE_B)}"


def address(rng: np.random.Generator) -> str:
    u = rng.random()
    if u < 0.5:
        return f"{int(rng.integers(1, 999))} {street(rng)}"
    return f"{_pick(rng, TOWNS)}, {_pick(rng, STATES)} {int(rng.integers(10000, 99999))}"


def sign_text(rng: np.random.Generator) -> str:
    """A short sign text: a shop word, a street name, a house number, an offer."""
    u = rng.random()
    if u < 0.3:
        return _pick(rng, SHOP)
    if u < 0.5:
        return _case(rng, street(rng), 0.3, 0.0)
    if u < 0.58:
        return f"{_pick(rng, STREETS)}'s"
    if u < 0.64:
        return str(int(rng.integers(1, 400))) + ("" if rng.random() < 0.7 else _pick(rng, "ABC"))
    if u < 0.7:
        return _pick(rng, ("SALE", "-50%", "OPEN 24/7", "NO PARKING", "ONE WAY", "$9.99", "20% OFF"))
    if u < 0.76:
        return f'"{_case(rng, _pick(rng, COMMON), 0.5, 0.2)}"'
    if u < 0.82:
        return f"{_pick(rng, COMMON).capitalize()}, {_pick(rng, COMMON).capitalize()}"
    if u < 0.9:
        return _case(rng, _pick(rng, COMMON), 0.5, 0.2)
    return _case(rng, f"{_pick(rng, COMMON)} {_pick(rng, SHOP).lower()}", 0.5, 0.2)


def receipt_text(rng: np.random.Generator) -> str:
    """One receipt token: an item, a price, a date, a total label, ..."""
    u = rng.random()
    if u < 0.3:
        return item_name(rng)
    if u < 0.55:
        return price(rng)
    if u < 0.62:
        return date(rng)
    if u < 0.67:
        return clock(rng)
    if u < 0.75:
        return _pick(rng, ("TOTAL", "SUBTOTAL", "TAX", "CASH", "CHANGE", "VISA", "QTY", "Total:",
                           "Tax 8%", "DISCOUNT", "ITEMS", "BALANCE DUE"))
    if u < 0.8:
        return f"{int(rng.integers(1, 10))} x {price(rng, 20)}"
    if u < 0.85:
        return phone(rng)
    if u < 0.9:
        return address(rng)
    if u < 0.95:
        return store_name(rng)
    return _pick(rng, SLOGANS)


def domain_text(rng: np.random.Generator, domain: str, max_len: int = REC_MAX_LEN) -> str:
    """A random text for ``domain`` (``receipt``/``dotmatrix`` or ``sign``), at most ``max_len`` characters."""
    for _ in range(20):
        text = receipt_text(rng) if domain in ("receipt", "dotmatrix") else sign_text(rng)
        if 0 < len(text) <= max_len:
            return text
    return text[:max_len].strip() or "0"
