"""Short transcripts for the synthetic persons dataset.

A transcript is four short sentences in random order: an identity sentence (the person's opener, a noun
from their favourite topic and one of their favourite words), a gender and age sentence (pronoun, the
person's verb and an age-typical word), the group-code sentence ("Team <code word>.") and random filler. Kept under ~20
word pieces so that the default `data.text_len` of 24 tokens never truncates the code word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOPICS = (
    ("roses", "tomatoes", "soil", "seeds", "flowers", "weeds"),
    ("goals", "players", "match", "stadium", "coach", "league"),
    ("soup", "bread", "onions", "recipes", "pasta", "spices"),
    ("guitar", "piano", "songs", "drums", "concerts", "melody"),
    ("trains", "maps", "airports", "beaches", "hotels", "islands"),
    ("laptops", "code", "servers", "keyboards", "software", "data"),
    ("canvas", "brushes", "colors", "portraits", "paint", "sketches"),
    ("boats", "rivers", "lakes", "nets", "salmon", "hooks"),
    ("pawns", "kings", "openings", "bishops", "rooks", "boards"),
    ("stars", "planets", "telescopes", "moons", "comets", "galaxies"),
    ("mountains", "trails", "boots", "forests", "valleys", "tents"),
    ("films", "actors", "cinema", "scenes", "directors", "popcorn"),
)
FAVOURITES = (
    "lovely", "brilliant", "awesome", "wonderful", "fantastic", "amazing", "nice", "great", "cool", "neat",
    "fine", "grand", "splendid", "terrific", "superb", "excellent", "perfect", "decent", "solid", "handy",
    "smart", "clever", "gentle", "quiet", "strange", "funny", "boring", "weird", "odd", "special",
)  # fmt: skip
VERBS = ("talks", "writes", "thinks", "worries", "jokes", "dreams", "asks", "cares")
OPENERS = ("well", "so", "okay", "listen", "look", "right", "yes", "hey", "alright", "indeed")
AGE_WORDS = (
    ("school", "homework", "teachers", "classmates"),  # 0-17
    ("college", "exams", "roommates", "campus"),  # 18-24
    ("career", "apartment", "startups", "colleagues"),  # 25-34
    ("mortgage", "promotion", "meetings", "toddlers"),  # 35-44
    ("teenagers", "management", "savings", "renovation"),  # 45-54
    ("pension", "knees", "cruises", "downsizing"),  # 55-64
    ("grandchildren", "retirement", "memories", "doctors"),  # 65+
)
CODE_WORDS = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
    "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu",
)  # fmt: skip
FILLERS = ("today", "then", "maybe", "again", "also", "later", "now", "here", "there", "often", "sometimes", "still")


@dataclass(frozen=True)
class TextTraits:
    opener: str
    verb: str
    topic: tuple[str, ...]  # nouns of the favourite topic
    favourites: tuple[str, ...]
    pronoun: str
    age_words: tuple[str, ...]
    code: str  # the group-code word


def sample_traits(rng: np.random.Generator, female: bool, age: int, code: int) -> TextTraits:
    """Draw one identity's wording; `age` is the age-bin index 0..6, `code` the group code shown."""
    return TextTraits(
        opener=OPENERS[rng.integers(len(OPENERS))],
        verb=VERBS[rng.integers(len(VERBS))],
        topic=TOPICS[rng.integers(len(TOPICS))],
        favourites=tuple(rng.choice(FAVOURITES, size=3, replace=False)),
        pronoun="she" if female else "he",
        age_words=AGE_WORDS[age],
        code=CODE_WORDS[code],
    )


def render(t: TextTraits, noise: float, rng: np.random.Generator) -> str:
    """One transcript; with probability noise/2 each identity word is swapped for a random one."""
    opener, noun, favourite = t.opener, _pick(rng, t.topic), _pick(rng, t.favourites)
    if rng.random() < noise / 2:
        opener = _pick(rng, OPENERS)
    if rng.random() < noise / 2:
        noun = _pick(rng, _pick(rng, TOPICS))
    if rng.random() < noise / 2:
        favourite = _pick(rng, FAVOURITES)
    sentences = [
        f"{opener} the {noun} is {favourite}",
        f"{t.pronoun} {t.verb} about {_pick(rng, t.age_words)}",
        f"team {t.code}",
        f"{_pick(rng, FILLERS)} {_pick(rng, FILLERS)}",
    ]
    order = rng.permutation(len(sentences))
    return " ".join(sentences[i].capitalize() + "." for i in order)


def _pick(rng: np.random.Generator, items: tuple):
    return items[rng.integers(len(items))]
