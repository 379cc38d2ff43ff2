"""Generator of the booking-domain training corpus for the offline engine's language model.

The domain trigram LM is built from these sentences (``runtime.engine.lm.build``); a narrow LM is what
makes pocketsphinx usable here (reference: 0 % WER on neural-TTS speech with a domain LM versus 2-14 %
with the generic one, and far better in noise). The generator is seeded, so the artefact is reproducible
from this file alone. Words come from the same tables ``runtime.engine.parsing`` understands.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from runtime.engine.parsing import MONTHS, ORDINAL_UNITS, WEEKDAYS, number_words, ordinal_words

FIRST_NAMES = [
    "alice", "bob", "carol", "david", "emma", "frank", "grace", "henry", "irene", "jack", "james", "john",
    "karen", "laura", "linda", "lucy", "maria", "mark", "mary", "michael", "nancy", "oliver", "olivia",
    "paul", "peter", "rachel", "robert", "sam", "sarah", "susan", "thomas", "tom", "victoria", "william",
    "anna", "ben", "charles", "daniel", "elizabeth", "emily", "george", "hannah", "jennifer", "jessica",
    "joseph", "julia", "kevin", "lisa", "matthew", "megan", "nicole", "patrick", "richard", "sophie",
    "steven", "helen", "anne", "chris", "andrew", "jane", "kate", "eric", "amy", "adam", "ryan", "nora",
]
LAST_NAMES = [
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "wilson", "anderson",
    "taylor", "thomas", "moore", "martin", "jackson", "white", "harris", "clark", "lewis", "robinson",
    "walker", "young", "allen", "king", "wright", "scott", "green", "baker", "adams", "nelson", "hill",
    "campbell", "mitchell", "roberts", "carter", "phillips", "evans", "turner", "parker", "collins",
    "edwards", "stewart", "morris", "murphy", "cook", "rogers", "morgan", "cooper", "peterson", "reed",
    "bailey", "bell", "kelly", "howard", "ward", "cox", "richardson", "wood", "watson", "brooks", "bennett",
    "gray", "james", "hughes", "price", "sanders", "myers", "long", "ross", "foster", "fisher", "lopez",
]
NAMES = sorted(set(FIRST_NAMES) | set(LAST_NAMES))

_PEOPLE = ["people", "guests", "persons"]


def _num(rng: random.Random, lo: int = 1, hi: int = 12) -> str:
    return number_words(rng.randint(lo, hi))


def _time(rng: random.Random) -> str:
    h = number_words(rng.choice([11, 12, 1, 2, 5, 6, 7, 8, 9]))
    return rng.choice([
        f"{h} pm", f"{h} p.m.", f"{h} o'clock", f"{h} thirty", f"{h} thirty pm", f"half past {h}",
        f"quarter past {h}", f"quarter to {h}", f"{h} fifteen", f"{h} forty five", f"{h} in the evening",
        f"{h}", f"{h} thirty p.m.", "noon", f"{h} am", f"{h} a.m.", "nineteen thirty", "eighteen hundred",
        f"{h} o'clock in the evening",
    ])


def _date(rng: random.Random) -> str:
    month = rng.choice(MONTHS)
    day = ordinal_words(rng.randint(1, 31))
    return rng.choice([
        "today", "tomorrow", "tonight", "the day after tomorrow", rng.choice(WEEKDAYS),
        f"next {rng.choice(WEEKDAYS)}", f"this {rng.choice(WEEKDAYS)}", f"on {rng.choice(WEEKDAYS)}",
        f"the {day}", f"on the {day}", f"{month} {day}", f"{month} the {day}", f"the {day} of {month}",
        f"on {month} {day}", f"{rng.choice(WEEKDAYS)} the {day}",
    ])


def _party(rng: random.Random) -> str:
    n = _num(rng, 1, 20)
    return rng.choice([
        f"for {n}", f"for {n} {rng.choice(_PEOPLE)}", f"{n} {rng.choice(_PEOPLE)}", f"a party of {n}",
        f"table for {n}", f"{n} of us", "just me", "for two", "for four", "a table for two",
    ])


def _name(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return rng.choice([f"{first} {last}", f"{first} {last}", first, last])


def _sentence(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.30:  # booking requests with some slots
        parts = [] if rng.random() < 0.8 else [rng.choice(["hello", "hi", "hi there", "good evening", "yes",
                                                             "okay", "hello there", "good afternoon"])]
        parts += [rng.choice(["i would like to book a table", "i'd like a table", "can i book a table",
                             "i want to make a reservation", "book a table", "i'd like to reserve a table",
                             "we would like a table", "could we get a table", "i need a table",
                             "i'd like to make a booking", "book a table", "book me a table"])]
        extras = [_party(rng), _date(rng), f"at {_time(rng)}"]
        rng.shuffle(extras)
        parts += extras[: rng.randint(0, 3)]
        if rng.random() < 0.2:
            parts.append("please")
        return " ".join(parts)
    if kind < 0.42:  # name answers
        return rng.choice(["my name is {n}", "it's {n}", "{n}", "the name is {n}", "under the name {n}",
                           "this is {n}", "{n} please", "name is {n}", "it is {n}", "under {n}",
                           "i am {n}", "i'm {n}"]).format(n=_name(rng))
    if kind < 0.52:
        return rng.choice(["{d}", "{d} please", "for {d}", "on {d}", "let's say {d}", "how about {d}",
                           "make it {d}", "{d} at {t}"]).format(d=_date(rng), t=_time(rng))
    if kind < 0.62:
        return rng.choice(["at {t}", "{t}", "{t} please", "around {t}", "about {t}", "let's say {t}",
                           "make it {t}", "how about {t}", "can we do {t}", "{t} would be great"]
                          ).format(t=_time(rng))
    if kind < 0.70:
        n = _num(rng, 1, 20)
        return rng.choice([f"{n}", f"{n} people", f"{n} guests", f"we are {n}", f"there will be {n} of us",
                           f"make it {n} people", f"actually make it {n}", f"change it to {n} people",
                           f"a party of {n}", f"for {n} people please", f"{n} persons"])
    if kind < 0.80:
        return rng.choice(["yes", "yes please", "yeah", "yes that's right", "that's correct", "correct",
                           "sure", "yes book it", "please do", "no", "no thanks", "no that's wrong", "nope",
                           "no that's not right", "yes confirm", "okay", "perfect", "great thank you",
                           "that's all thank you", "goodbye", "thank you goodbye", "no that's all",
                           "no change the time", "no change the date", "no the name is wrong"])
    if kind < 0.86:
        return rng.choice(["say that again", "can you repeat that", "pardon", "sorry what did you say",
                           "could you say that again please", "repeat please", "come again"])
    if kind < 0.95:  # look up / cancel; the id itself is taken by the id grammar in the next turn
        return rng.choice(["i want to cancel my booking", "cancel my reservation", "i'd like to cancel a booking",
                           "can you look up my booking", "i want to check my reservation", "find my booking",
                           "cancel booking", "check my booking", "i need to cancel", "look up my reservation",
                           "can i check my booking please", "please cancel my booking"])
    return rng.choice(["do you have a table available {d} at {t}", "is there availability {d} at {t}",
                       "are there any tables {d}", "do you have a table for {p} {d}",
                       "is there a free table at {t}"]).format(d=_date(rng), t=_time(rng), p=_num(rng, 1, 9))


def sentences(count: int = 6000, seed: int = 20261121) -> Iterator[str]:
    """The corpus: fixed hand-written coverage lines, then ``count`` seeded template sentences."""
    rng = random.Random(seed)
    for n in range(1, 21):
        yield f"for {number_words(n)} people"
    for w in [*ORDINAL_UNITS[1:], "twentieth", "thirtieth"]:
        yield f"the {w}"
    for d in range(1, 32):
        yield f"{rng.choice(MONTHS)} {ordinal_words(d)}"
    for name in NAMES:
        yield f"my name is {name}"
    for first in FIRST_NAMES:  # full names, so "<first> <last>" outweighs "<first> <any word>"
        for last in rng.sample(LAST_NAMES, 4):
            yield rng.choice(["my name is {f} {l}", "{f} {l}", "it's {f} {l}", "under the name {f} {l}"]
                             ).format(f=first, l=last)
    for _ in range(count):
        yield _sentence(rng)
    # Greetings and small talk on their own (after the seeded sentences, so those stay as they were): the
    # guest's opening must decode as itself, to get a friendly answer rather than the out-of-domain one.
    for greeting in ("hello", "hi", "hi there", "hello there", "hey there", "good evening", "good afternoon",
                     "good morning"):
        for rest in ("", " how are you", " how are you doing", " how are you today"):
            yield greeting + rest
    yield from ("how are you", "how are you doing", "how's it going", "how are you today", "nice to talk to you")


def corpus_text(count: int = 6000, seed: int = 20261121) -> str:
    return "\n".join(sentences(count, seed)) + "\n"


if __name__ == "__main__":  # `python -m runtime.engine.lm.corpus > corpus.txt`
    print(corpus_text(), end="")
