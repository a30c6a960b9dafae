"""A small grammar of everyday English lines for the procedural dubbing corpus.

Each line is 3–9 words (about 1–2.5 s when spoken): statements, questions, requests and exclamations about
people, places, things, food and times, e.g. `"Where did you put the map?"`, `"Please close the window."`,
`"We found the keys this morning."`, `"What a lovely garden!"`. The words are common ones, so that a speech
recogniser transcribes the synthetic speech well (a GRID-style `"bin blue at f two now"` script would not
read like film dialogue and defeats language-model-assisted recognisers). Only letters, space and `,.?!'`
occur, so any character or phoneme tokenizer covers the scripts.

A line is a template whose slots are filled from word lists; :data:`VOCABULARY` holds every word that can
occur, for the corpus card.
"""

from __future__ import annotations

import re

import numpy as np

MIN_WORDS = 3
MAX_WORDS = 9
ALLOWED_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,.?!'")
SENTENCE_KINDS = ("statement", "question", "request", "exclamation")

# ---------------------------------------------------------------------------------------------------------------
# Word lists. Nouns are singular so that "is" always agrees; verbs come with their past tense because
# statements are told in the past or with a modal, which avoids third-person "-s" agreement.
# ---------------------------------------------------------------------------------------------------------------

NAMES = ("Anna", "Tom", "Sam", "Lucy", "Max", "Emma", "Jack", "Ben", "Kate", "Leo", "Mia", "Paul", "Sarah", "David")
PEOPLE = (
    "mother", "father", "brother", "sister", "friend", "teacher", "doctor", "neighbor", "boss", "uncle",
    "aunt", "grandmother", "grandfather", "captain", "driver", "baby", "cousin", "son", "daughter", "boy", "girl",
)  # fmt: skip
# Places one is "at" and places one is "in"; both are places one goes "to".
AT_PLACES = (
    "station", "market", "school", "office", "river", "beach", "hospital", "library", "hotel", "church",
    "bakery", "harbor", "farm", "shop", "bridge", "museum", "lake", "airport", "restaurant", "door",
)  # fmt: skip
IN_PLACES = ("kitchen", "garden", "house", "village", "city", "forest", "bedroom", "hall", "park", "car")
PLACES = tuple(p for p in AT_PLACES + IN_PLACES if p not in ("door", "car"))
THINGS = (
    "key", "map", "door", "window", "letter", "bag", "phone", "book", "coat", "box", "ticket", "ring",
    "bottle", "basket", "umbrella", "camera", "picture", "lamp", "chair", "clock", "hat", "blanket", "watch",
    "wallet", "radio", "car", "bike", "boat", "money", "paper", "gift", "card", "table", "bed", "cup",
)  # fmt: skip
FOOD = (
    "bread", "cake", "soup", "tea", "coffee", "milk", "cheese", "pie", "rice", "fish", "chicken", "salad",
    "pizza", "sandwich", "juice", "apple", "orange", "dinner", "lunch", "breakfast",
)  # fmt: skip
# (base, past) pairs for verbs that take a thing.
THING_VERBS = (
    ("find", "found"), ("bring", "brought"), ("take", "took"), ("open", "opened"), ("close", "closed"),
    ("carry", "carried"), ("fix", "fixed"), ("clean", "cleaned"), ("hide", "hid"), ("check", "checked"),
    ("keep", "kept"), ("move", "moved"), ("lose", "lost"), ("sell", "sold"), ("buy", "bought"),
    ("pack", "packed"), ("hold", "held"), ("drop", "dropped"), ("return", "returned"), ("paint", "painted"),
    ("wash", "washed"), ("show", "showed"), ("break", "broke"), ("forget", "forgot"), ("need", "needed"),
)  # fmt: skip
FOOD_VERBS = (
    ("eat", "ate"), ("cook", "cooked"), ("buy", "bought"), ("bring", "brought"), ("taste", "tasted"),
    ("share", "shared"), ("finish", "finished"), ("make", "made"), ("order", "ordered"), ("want", "wanted"),
)  # fmt: skip
# Intransitive verbs of going and doing, (base, past).
GO_VERBS = (("go", "went"), ("walk", "walked"), ("run", "ran"), ("drive", "drove"), ("come", "came"))
DO_VERBS = (
    ("sleep", "slept"), ("wait", "waited"), ("work", "worked"), ("sing", "sang"), ("dance", "danced"),
    ("swim", "swam"), ("laugh", "laughed"), ("cry", "cried"), ("play", "played"), ("read", "read"),
    ("study", "studied"), ("rest", "rested"), ("leave", "left"), ("stay", "stayed"), ("call", "called"),
)  # fmt: skip
SUBJECTS = ("I", "we", "they", "you", "he", "she")
# Times agree with the tense of the template that uses them ("Why did you swim next week?" would not).
PAST_TIMES = (
    "yesterday", "last night", "this morning", "last summer", "last week", "on Monday", "on Sunday", "today",
    "again", "earlier",
)  # fmt: skip
FUTURE_TIMES = (
    "tomorrow", "tonight", "next week", "later", "soon", "after school", "before dinner", "on Monday",
    "on Sunday", "at noon", "this evening", "today",
)  # fmt: skip
PRESENT_TIMES = ("today", "right now", "again", "tonight", "this morning")
STATES = (
    "cold", "late", "ready", "tired", "hungry", "happy", "busy", "lost", "early", "angry", "sorry", "sick",
    "afraid", "right", "wrong", "alone", "quiet", "sad", "strange", "fine", "safe",
)  # fmt: skip
THING_QUALITIES = (
    "beautiful", "strange", "wonderful", "terrible", "big", "small", "old", "new", "empty", "broken", "heavy",
    "perfect", "funny", "dirty", "clean", "wet",
)  # fmt: skip
PLACE_QUALITIES = (
    "beautiful", "lovely", "strange", "wonderful", "terrible", "big", "small", "old", "new", "dark", "bright",
    "warm", "cold", "empty", "quiet", "busy", "crowded",
)  # fmt: skip
NOUN_QUALITIES = ("beautiful", "lovely", "strange", "wonderful", "terrible", "funny", "perfect", "quiet")
EXCLAMATIONS = (
    "I can't believe it!", "We did it!", "Stop right there!", "Come back here!", "That is wonderful news!",
    "Watch out, it is falling!", "Oh no, not again!", "Leave me alone!", "This is amazing!", "Get out of here!",
    "I told you so!", "That is not fair!", "You scared me!", "Thank you so much!", "Look over there!",
    "Hurry up, we are late!", "Nobody move an inch!", "What a surprise!", "Happy birthday, my friend!",
)  # fmt: skip
QUESTIONS = (
    "What are you doing here?", "Are you all right?", "What happened to you?", "Have you seen my brother?",
    "Why are you so quiet?", "Do you want to come with us?", "Who told you that?", "Is anybody home?",
    "What time is it now?", "Can you hear me?", "How was your day?", "Where are we going?",
)  # fmt: skip

# Templates: `{slot}` is filled from the list of the same name (see `_SLOTS`); everything else is literal.
TEMPLATES = {
    "statement": (
        "{Subject} {past_thing} the {thing} {time_past}.",
        "The {thing} is {loc}.",
        "My {person} is {state} {time_present}.",
        "{Name} {past_thing} the {thing} {loc}.",
        "I need to {verb_thing} the {thing}.",
        "{Subject} will be {loc} {time_future}.",
        "{Subject} {past_go} to the {place} {time_past}.",
        "My {person} {past_food} the {food}.",
        "The {food} is {state_food}.",
        "{Name} is waiting {loc}.",
        "I think the {thing} is {quality}.",
        "{Subject} {past_do} all day.",
        "We should {verb_go} to the {place} {time_future}.",
        "{Name} and {Name2} {past_go} to the {place}.",
        "Your {person} called {time_past}.",
        "I left my {thing} {loc}.",
        "The {place} was {place_quality} {time_past}.",
        "I am {state}, {Name}.",
        "I am {state}.",
        "{Name} is {state}.",
        "We are {state}.",
        "{Subject} can {verb_do} {loc}.",
    ),
    "question": (
        "Where did you put the {thing}?",
        "Did you {verb_thing} the {thing} {time_past}?",
        "Why is the {thing} {quality}?",
        "Who is waiting {loc}?",
        "Can we go to the {place} {time_future}?",
        "Is your {person} coming {time_future}?",
        "How did you find the {thing}?",
        "Where is my {thing}, {Name}?",
        "Do you want some {food}?",
        "Are you {state}?",
        "Where is {Name}?",
        "What did {Name} say {time_past}?",
        "Have you seen the {thing}?",
        "Why did you {verb_do} {time_past}?",
        "Who took my {thing}?",
        "Is the {place} far from here?",
        "Did your {person} {verb_food} the {food}?",
        "{question}",
    ),
    "request": (
        "Please {verb_request} the {thing}.",
        "Please bring me the {thing}.",
        "Could you {verb_request} the {thing} {time_future}?",
        "Let's go to the {place}.",
        "{Verb_request} the {thing}.",
        "Come here, {Name}.",
        "Don't forget the {thing}.",
        "Please wait for me {loc}.",
        "Give me the {thing}, {Name}.",
        "Tell your {person} to {verb_go} home.",
        "Help me {verb_request} this {thing}.",
        "Can you {verb_food} the {food} {time_future}?",
        "Please don't {verb_do} here.",
        "Meet me {loc} {time_future}.",
    ),
    "exclamation": (
        "What a {noun_quality} {place}!",
        "What a {noun_quality} {thing}!",
        "Look at the {thing}!",
        "Oh no, the {thing} is gone!",
        "The {food} is {state_food}!",
        "I love this {place}!",
        "Get away from my {thing}!",
        "{Name}, the {thing} is {quality}!",
        "You {past_thing} my {thing}!",
        "{exclamation}",
    ),
}

# Nobody asks for a thing to be lost or broken.
_REQUEST_VERBS = tuple(v for v, _ in THING_VERBS if v not in ("lose", "forget", "break", "drop", "need", "hide"))
_SLOTS = {
    "Subject": SUBJECTS,
    "Name": NAMES,
    "Name2": NAMES,
    "person": PEOPLE,
    "place": PLACES,
    "thing": THINGS,
    "food": FOOD,
    "time_past": PAST_TIMES,
    "time_future": FUTURE_TIMES,
    "time_present": PRESENT_TIMES,
    "loc": tuple(f"at the {p}" for p in AT_PLACES) + tuple(f"in the {p}" for p in IN_PLACES),
    "state": STATES,
    "state_food": ("cold", "ready", "warm", "fresh", "delicious", "burnt", "gone"),
    "quality": THING_QUALITIES,
    "place_quality": PLACE_QUALITIES,
    "noun_quality": NOUN_QUALITIES,
    "verb_thing": tuple(v for v, _ in THING_VERBS),
    "past_thing": tuple(p for _, p in THING_VERBS),
    "verb_request": _REQUEST_VERBS,
    "Verb_request": tuple(v.capitalize() for v in _REQUEST_VERBS),
    "verb_food": tuple(v for v, _ in FOOD_VERBS),
    "past_food": tuple(p for _, p in FOOD_VERBS),
    "verb_go": tuple(v for v, _ in GO_VERBS),
    "past_go": tuple(p for _, p in GO_VERBS),
    "verb_do": tuple(v for v, _ in DO_VERBS),
    "past_do": tuple(p for _, p in DO_VERBS),
    "question": QUESTIONS,
    "exclamation": EXCLAMATIONS,
}
_SLOT_PATTERN = re.compile(r"\{(\w+)\}")


def _words(text: str) -> list:
    """Lower-case words of `text` without punctuation (contractions such as "can't" stay one word)."""
    return [w.strip(",.?!").lower() for w in text.split() if w.strip(",.?!")]


def _build_vocabulary() -> tuple:
    words = set()
    for templates in TEMPLATES.values():
        for template in templates:
            words.update(_words(_SLOT_PATTERN.sub(" ", template)))
    for fillers in _SLOTS.values():
        for filler in fillers:
            words.update(_words(filler))
    return tuple(sorted(words))


VOCABULARY = _build_vocabulary()


class SentenceGrammar:
    r"""Draws everyday English lines (3–9 words) for the procedural corpus.

    Args:
        kind_weights (`dict`, *optional*):
            Probability of each kind of line, keys from `("statement", "question", "request", "exclamation")`.
            Defaults to 45 % statements, 25 % questions, 15 % requests and 15 % exclamations.

    Example:

    ```py
    >>> import numpy as np
    >>> from deepdubber_hf.data.grammar import SentenceGrammar
    >>> grammar = SentenceGrammar()
    >>> line = grammar.sentence(np.random.default_rng(0))
    >>> 3 <= len(line.split()) <= 9
    True
    ```
    """

    def __init__(self, kind_weights: dict | None = None):
        if kind_weights is None:
            kind_weights = {"statement": 0.45, "question": 0.25, "request": 0.15, "exclamation": 0.15}
        unknown = set(kind_weights) - set(SENTENCE_KINDS)
        if unknown:
            raise ValueError(f"kind_weights has unknown kinds {sorted(unknown)}; use keys from {SENTENCE_KINDS}.")
        total = float(sum(kind_weights.values()))
        if total <= 0 or any(w < 0 for w in kind_weights.values()):
            raise ValueError(f"kind_weights={kind_weights} must be non-negative with a positive sum.")
        self.kinds = tuple(kind_weights)
        self.kind_probabilities = np.array([kind_weights[k] / total for k in self.kinds])

    @staticmethod
    def _fill(template: str, rng: np.random.Generator, shortest: bool = False) -> str:
        chosen = {}

        def pick(match: re.Match) -> str:
            slot = match.group(1)
            fillers = _SLOTS[slot]
            if slot == "Name2":  # "Name and Name2" are two different people
                fillers = tuple(n for n in fillers if n != chosen.get("Name"))
            if shortest:
                filler = min(fillers, key=lambda f: (len(f.split()), f))
            else:
                filler = fillers[int(rng.integers(len(fillers)))]
            chosen[slot] = filler
            return filler

        text = _SLOT_PATTERN.sub(pick, template)
        return text[0].upper() + text[1:]

    def sentence(
        self, rng: np.random.Generator, max_words: int | None = None, kind: str | None = None
    ) -> str:
        """Draw one line.

        Args:
            rng (`np.random.Generator`):
                The source of randomness; the same generator state gives the same line.
            max_words (`int`, *optional*):
                Upper bound on the number of words (at least 3, at most 9); defaults to 9. Use it to fit a line
                into a short turn.
            kind (`str`, *optional*):
                Force one of `("statement", "question", "request", "exclamation")`; drawn from
                `kind_weights` when not given.

        Returns:
            `str`: a capitalised line ending in `.`, `?` or `!`, e.g. `"Did you find the map tonight?"`.
        """
        if max_words is None:
            max_words = MAX_WORDS
        if not MIN_WORDS <= max_words <= MAX_WORDS:
            raise ValueError(f"max_words={max_words} is out of range; pass a value from {MIN_WORDS} to {MAX_WORDS}.")
        if kind is None:
            kind = self.kinds[int(rng.choice(len(self.kinds), p=self.kind_probabilities))]
        elif kind not in SENTENCE_KINDS:
            raise ValueError(f"kind={kind!r} is unknown; use one of {SENTENCE_KINDS} or None.")
        templates = TEMPLATES[kind]
        # Redraw until the line fits (almost always on the first or second draw for max_words >= 5); past the
        # bound, take the shortest filling of a template that fits, so that the loop is finite.
        for _ in range(32):
            text = self._fill(templates[int(rng.integers(len(templates)))], rng)
            if MIN_WORDS <= len(text.split()) <= max_words:
                return text
        fits = [t for t in templates if len(self._fill(t, rng, shortest=True).split()) <= max_words]
        if not fits:
            raise ValueError(f"No {kind} line fits in max_words={max_words}; allow more words or another kind.")
        return self._fill(fits[int(rng.integers(len(fits)))], rng, shortest=True)


__all__ = [
    "ALLOWED_CHARACTERS",
    "MAX_WORDS",
    "MIN_WORDS",
    "SENTENCE_KINDS",
    "TEMPLATES",
    "VOCABULARY",
    "SentenceGrammar",
]
