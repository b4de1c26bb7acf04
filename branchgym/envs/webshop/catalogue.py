"""The WebShop catalogue: seeded products and the search engine both sides of the wire share.

Where it sits: the site (``site.py``) serves these products and answers searches with
``search``; the environment (``env.py``) runs the same ``search`` to plan the oracle's clicks,
and ``instructions.py`` draws each task's goal from the same products. One ``catalogue_seed``
fixes every product: both sides build it themselves (``build_catalogue`` is cached per seed),
so nothing but session state crosses the loopback boundary.

Eight departments of four product types each; every type has its department's eight
attributes to draw from, one to three option groups (colour, size, flavour, ...) and a price
range. Twenty products per type, so 640 in all, each with a made-up brand, three attributes,
two to four values per option group, a price, a rating, features and reviews. All text is
ASCII: observations live in a ``gymnasium.spaces.Text`` of printable characters.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rank_bm25 import BM25Okapi

PER_PAGE = 10  # results on one search page, as in WebShop
MAX_RESULTS = 50  # WebShop's search engine returns its top 50
PRODUCTS_PER_TYPE = 20


@dataclass(frozen=True)
class ProductType:
    """A kind of product: its name (the nouns the type reward compares), category path,
    option groups (name, possible values) and price range in dollars."""

    name: str
    path: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: tuple[int, int]


@dataclass(frozen=True)
class Department:
    name: str
    attributes: tuple[str, ...]  # eight, shared by the department's four types
    descriptors: tuple[str, ...]  # title words that vary products without meaning much
    types: tuple[ProductType, ...]


def _t(name: str, path: str, options: str, price: tuple[int, int]) -> ProductType:
    """A type from compact text: path ``"A > B"``, options ``"color: red, nude; size: s, m"``."""
    groups = tuple(
        (g.split(":")[0].strip(), tuple(v.strip() for v in g.split(":")[1].split(",")))
        for g in options.split(";")
    )
    return ProductType(name, tuple(p.strip() for p in path.split(">")), groups, price)


_BEAUTY = "Beauty & Personal Care"
_CLOTHES = "Clothing, Shoes & Jewelry > Clothing"
_PHONE = "Electronics > Cell Phones & Accessories > Chargers & Power Adapters"
_FOOD = "Grocery & Gourmet Food"
_FITNESS = "Sports & Outdoors > Exercise & Fitness"
_OFFICE = "Office Products > Office & School Supplies"
_SIZES = "small, medium, large, x-large, xx-large"

DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "beauty",
        ("long lasting", "cruelty free", "paraben free", "vegan", "travel size",
         "sensitive skin", "natural ingredients", "fragrance free"),
        ("Classic", "Pro", "Everyday", "Premium", "Essentials"),
        (
            _t("lipstick", f"{_BEAUTY} > Makeup > Lips > Lipstick",
               "color: red, nude, pink, berry, coral, plum; finish: matte, satin, gloss", (6, 30)),
            _t("nail polish", f"{_BEAUTY} > Makeup > Nails > Nail Polish",
               "color: red, black, pink, clear, coral, navy; size: 0.3 fl oz, 0.5 fl oz", (4, 20)),
            _t("face moisturizer", f"{_BEAUTY} > Skin Care > Face > Moisturizers",
               "size: 1.7 fl oz, 2.5 fl oz, 3.4 fl oz; scent: unscented, lavender, citrus, rose",
               (9, 60)),
            _t("shampoo", f"{_BEAUTY} > Hair Care > Shampoo",
               "size: 8 fl oz, 12 fl oz, 16 fl oz, 32 fl oz; scent: coconut, mint, lavender, "
               "unscented", (5, 35)),
        ),
    ),
    Department(
        "clothing",
        ("machine washable", "moisture wicking", "quick drying", "breathable", "wrinkle free",
         "organic cotton", "stretch fabric", "tagless"),
        ("Classic", "Active", "Everyday", "Comfort", "Urban"),
        (
            _t("polo shirt", f"{_CLOTHES} > Men > Shirts > Polos",
               f"size: {_SIZES}; color: black, white, navy, heather grey, red", (12, 45)),
            _t("hoodie", f"{_CLOTHES} > Women > Fashion Hoodies & Sweatshirts",
               f"size: {_SIZES}; color: black, grey, pink, olive, burgundy", (20, 60)),
            _t("athletic socks", f"{_CLOTHES} > Men > Socks > Athletic Socks",
               "size: small, medium, large; color: black, white, grey; "
               "pack: 3 pairs, 6 pairs, 12 pairs", (8, 30)),
            _t("jogger pants", f"{_CLOTHES} > Men > Pants > Joggers",
               f"size: {_SIZES}; color: black, khaki, navy, charcoal", (18, 55)),
        ),
    ),
    Department(
        "electronics",
        ("wireless", "fast charging", "noise cancelling", "water resistant", "long battery life",
         "usb c", "lightweight", "hands free"),
        ("Pro", "Max", "Lite", "Plus", "Go"),
        (
            _t("headphones", "Electronics > Headphones & Earbuds > Over-Ear Headphones",
               "color: black, white, blue, rose gold", (20, 200)),
            _t("phone charger", f"{_PHONE} > Wall Chargers",
               "cable length: 3 ft, 6 ft, 10 ft; color: black, white", (8, 35)),
            _t("bluetooth speaker", "Electronics > Portable Audio & Video > Portable Speakers",
               "color: black, blue, red, teal", (25, 150)),
            _t("power bank", f"{_PHONE} > Portable Power Banks",
               "capacity: 10000mah, 20000mah, 26800mah; color: black, white, blue", (15, 70)),
        ),
    ),
    Department(
        "grocery",
        ("gluten free", "non gmo", "sugar free", "organic", "keto friendly", "low sodium",
         "high protein", "kosher"),
        ("Farmhouse", "Simply", "Golden", "Harvest", "Pantry"),
        (
            _t("granola", f"{_FOOD} > Breakfast Foods > Cereals > Granola",
               "flavor: honey almond, dark chocolate, cinnamon, blueberry; "
               "size: 12 oz, 24 oz, 2 pack", (4, 20)),
            _t("green tea", f"{_FOOD} > Beverages > Tea > Green Tea",
               "flavor: jasmine, mint, lemon, original; count: 20 count, 50 count, 100 count",
               (4, 25)),
            _t("peanut butter", f"{_FOOD} > Pantry Staples > Sweet Spreads > Peanut Butter",
               "style: creamy, crunchy; size: 16 oz, 28 oz, 40 oz", (3, 18)),
            _t("protein bars", f"{_FOOD} > Snack Foods > Bars > Protein Bars",
               "flavor: chocolate chip, cookies and cream, birthday cake, salted caramel; "
               "count: 12 count, 24 count", (15, 45)),
        ),
    ),
    Department(
        "home",
        ("dishwasher safe", "bpa free", "easy to clean", "non slip", "space saving",
         "stainless steel", "heat resistant", "eco friendly"),
        ("Home", "Modern", "Classic", "Essentials", "Studio"),
        (
            _t("water bottle", "Home & Kitchen > Kitchen & Dining > Water Bottles",
               "capacity: 18 oz, 24 oz, 32 oz, 40 oz; color: black, white, sage, coral", (10, 45)),
            _t("cutting board", "Home & Kitchen > Kitchen & Dining > Cutting Boards",
               "size: small, medium, large; material: bamboo, acacia wood, plastic", (10, 50)),
            _t("throw pillow covers", "Home & Kitchen > Home Decor > Throw Pillow Covers",
               "size: 18x18 inch, 20x20 inch, 22x22 inch; color: beige, navy, grey, mustard",
               (9, 35)),
            _t("storage bins", "Home & Kitchen > Storage & Organization > Storage Bins",
               "size: small, medium, large; color: grey, white, beige, black", (12, 45)),
        ),
    ),
    Department(
        "pets",
        ("grain free", "durable", "machine washable", "non toxic", "easy to clean", "adjustable",
         "waterproof", "natural ingredients"),
        ("Happy", "Pet", "Cozy", "Everyday", "Trail"),
        (
            _t("dog bed", "Pet Supplies > Dogs > Beds & Furniture > Beds",
               "size: small, medium, large, x-large; color: grey, brown, navy", (25, 90)),
            _t("cat litter", "Pet Supplies > Cats > Litter & Housebreaking > Litter",
               "scent: unscented, lavender, fresh; size: 20 lb, 40 lb", (10, 35)),
            _t("dog collar", "Pet Supplies > Dogs > Collars, Harnesses & Leashes > Collars",
               "size: small, medium, large; color: red, black, blue, pink", (7, 25)),
            _t("dog treats", "Pet Supplies > Dogs > Treats",
               "flavor: chicken, beef, salmon, peanut butter; size: 6 oz, 12 oz, 24 oz", (6, 30)),
        ),
    ),
    Department(
        "sports",
        ("lightweight", "waterproof", "non slip", "portable", "durable", "foldable", "adjustable",
         "high density"),
        ("Trail", "Peak", "Core", "Active", "Summit"),
        (
            _t("yoga mat", f"{_FITNESS} > Yoga > Yoga Mats",
               "color: purple, black, teal, pink; thickness: 1/4 inch, 1/2 inch", (15, 60)),
            _t("camping tent", "Sports & Outdoors > Outdoor Recreation > Camping & Hiking > Tents",
               "capacity: 2 person, 4 person, 6 person; color: green, orange, grey", (40, 250)),
            _t("resistance bands", f"{_FITNESS} > Strength Training Equipment > Resistance Bands",
               "resistance: light, medium, heavy, extra heavy; pack: single band, set of 5",
               (8, 35)),
            _t("dumbbells", f"{_FITNESS} > Strength Training Equipment > Dumbbells",
               "weight: 5 lb, 10 lb, 15 lb, 20 lb, 25 lb; color: black, grey, pink", (15, 120)),
        ),
    ),
    Department(
        "office",
        ("refillable", "quick drying", "acid free", "heavy duty", "ergonomic", "recycled",
         "smudge proof", "bleed proof"),
        ("Office", "Studio", "Classic", "Scholar", "Desk"),
        (
            _t("gel pens", f"{_OFFICE} > Writing Supplies > Pens > Gel Pens",
               "color: black, blue, assorted; pack: 12 pack, 24 pack, 48 pack", (6, 30)),
            _t("spiral notebook", f"{_OFFICE} > Paper > Notebooks > Wirebound Notebooks",
               "size: a5, letter; style: college ruled, wide ruled, dotted, blank", (4, 20)),
            _t("desk organizer", f"{_OFFICE} > Desk Accessories > Desk Organizers",
               "color: black, white, walnut, rose gold", (12, 45)),
            _t("stapler", f"{_OFFICE} > Staplers & Punches > Staplers",
               "color: black, silver, blue, red; capacity: 20 sheet, 40 sheet", (8, 40)),
        ),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Product:
    """One item of the shop. ``options`` lists each group's name and the values on offer."""

    asin: str
    title: str
    product_type: str
    category: tuple[str, ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: float
    rating: float
    description: str
    features: tuple[str, ...]
    reviews: tuple[tuple[float, str], ...]

    @property
    def text(self) -> str:
        """Title, features and description, lower-cased: where WebShop's reward looks for an
        attribute or option the structured fields do not name."""
        return " ".join((self.title, *self.features, self.description)).lower()


@dataclass(frozen=True)
class Catalogue:
    """Every product of one seed. ``held_out`` holds the (product type, attribute) pairs that
    only ``unseen`` instructions ask for."""

    seed: int
    products: tuple[Product, ...]
    held_out: frozenset[tuple[str, str]]
    by_asin: dict[str, Product] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_asin.update({p.asin: p for p in self.products})


_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "eo"]
_BENEFITS = (
    "for everyday use",
    "tested to last",
    "made with care",
    "built for daily life",
    "a customer favourite",
)
_REVIEWS = (
    "Exactly as described, would buy again.",
    "Good value for the price.",
    "Works well, arrived quickly.",
    "Decent quality but the packaging was damaged.",
    "Not what I expected, returned it.",
    "Great product, my second order.",
    "Does the job. Nothing special.",
)


def held_out_attributes(dept: Department) -> frozenset[tuple[str, str]]:
    """Type i of a department holds out attributes 2i and 2i+1: every attribute is held out
    for exactly one type and seen with the other three, so ``unseen`` asks for known words in
    new (type, attribute) combinations."""
    return frozenset(
        (ptype.name, dept.attributes[(2 * i + k) % len(dept.attributes)])
        for i, ptype in enumerate(dept.types)
        for k in (0, 1)
    )


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(3)).capitalize()


def _asin(rng: random.Random, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _product(rng: random.Random, dept: Department, ptype: ProductType, asin: str) -> Product:
    """One product of ``ptype``: three of the department's attributes, 2-4 values per option
    group (in the type's order), a price ending in .99 inside the type's range."""
    brand, descriptor = _brand(rng), rng.choice(dept.descriptors)
    attributes = tuple(sorted(rng.sample(dept.attributes, 3), key=dept.attributes.index))
    options = tuple(
        (name, tuple(sorted(rng.sample(values, rng.randint(2, min(4, len(values)))),
                            key=values.index)))
        for name, values in ptype.options
    )  # fmt: skip
    price = rng.randint(*ptype.price) + 0.99
    title = f"{brand} {descriptor} {ptype.name.title()} - " + ", ".join(
        a.title() for a in attributes
    )
    features = tuple(f"{a.capitalize()}: {rng.choice(_BENEFITS)}." for a in attributes)
    description = (
        f"The {descriptor} {ptype.name} from {brand} is {attributes[0]} and {attributes[1]}. "
        f"Sold by {brand}, {rng.choice(_BENEFITS)}."
    )
    reviews = tuple(
        (float(rng.randint(2, 5)), rng.choice(_REVIEWS)) for _ in range(rng.randint(1, 3))
    )
    rating = round(sum(r for r, _ in reviews) / len(reviews), 1)
    return Product(asin, title, ptype.name, ptype.path, attributes, options, price, rating,
                   description, features, reviews)  # fmt: skip


@lru_cache(maxsize=4)
def build_catalogue(seed: int = 0) -> Catalogue:
    """The catalogue of ``seed``: the same seed always gives the same products (about 10 ms)."""
    rng = random.Random(seed)
    taken: set[str] = set()
    products = [
        _product(rng, dept, ptype, _asin(rng, taken))
        for dept in DEPARTMENTS
        for ptype in dept.types
        for _ in range(PRODUCTS_PER_TYPE)
    ]
    rng.shuffle(products)  # the shop lists products in no meaningful order
    held = frozenset().union(*(held_out_attributes(d) for d in DEPARTMENTS))
    return Catalogue(seed, tuple(products), held)


def terms(text: str) -> list[str]:
    """Lower-case word tokens: what the search engine indexes and matches."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _document(p: Product) -> list[str]:
    values = [v for _, vs in p.options for v in vs]
    return terms(" ".join([p.title, p.product_type, *p.category, *p.attributes, *values]))


@lru_cache(maxsize=4)
def _index(seed: int) -> BM25Okapi:
    return BM25Okapi([_document(p) for p in build_catalogue(seed).products])


@lru_cache(maxsize=4096)
def search(seed: int, query: str) -> tuple[str, ...]:
    """The ASINs BM25 ranks highest for ``query`` (at most ``MAX_RESULTS``, ties in catalogue
    order), as WebShop's Lucene engine returns its top 50. Products that share no word with
    the query are never listed."""
    words = terms(query)
    if not words:
        return ()
    products = build_catalogue(seed).products
    scores = _index(seed).get_scores(words)
    order = np.argsort(-scores, kind="stable")[:MAX_RESULTS]
    # every matched word adds a positive score (rank_bm25 floors negative idf at a positive
    # epsilon), so a zero score means no word matched
    return tuple(products[i].asin for i in order if scores[i] > 0)


def page_count(n_results: int) -> int:
    """Search pages for ``n_results`` (one empty page when there are none)."""
    return max(1, -(-n_results // PER_PAGE))
