"""Turn recognised words into booking facts: party size, date, time, name, booking id, intents.

The ASR emits lower-case words from a small vocabulary (the domain LM, the booking-id grammar or, as a
fallback, the generic CMU model), so plain word matching is enough; no NLU library fits this narrow,
deterministic job better than a few tables. The same word tables feed the corpus generator
(``runtime.engine.lm.corpus``), which keeps what the recogniser can say and what this module understands
in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
ORDINAL_UNITS = ["zeroth", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
                 "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth",
                 "seventeenth", "eighteenth", "nineteenth"]
ORDINAL_TENS = {"twentieth": 20, "thirtieth": 30}
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
# Spoken letters as the CMU dictionary spells them, and the NATO alphabet (both accepted for ids).
LETTERS = {chr(c): chr(c).upper() for c in range(ord("a"), ord("z") + 1)}
NATO = {"alpha": "A", "alfa": "A", "bravo": "B", "charlie": "C", "delta": "D", "echo": "E", "foxtrot": "F",
        "golf": "G", "hotel": "H", "india": "I", "juliet": "J", "kilo": "K", "lima": "L", "mike": "M",
        "november": "N", "oscar": "O", "papa": "P", "quebec": "Q", "romeo": "R", "sierra": "S", "tango": "T",
        "uniform": "U", "victor": "V", "whiskey": "W", "x-ray": "X", "xray": "X", "yankee": "Y", "zulu": "Z"}
DIGIT_WORDS = {w: str(i) for i, w in enumerate(UNITS[:10])} | {"oh": "0"}

_NUMBER_WORDS: dict[str, int] = {w: i for i, w in enumerate(UNITS)} | TENS
_ORDINALS: dict[str, int] = {w: i for i, w in enumerate(ORDINAL_UNITS) if i} | ORDINAL_TENS

YES_WORDS = {"yes", "yeah", "yep", "sure", "correct", "right", "confirm", "ok", "okay", "absolutely", "perfect",
             "great", "please"}
NO_WORDS = {"no", "nope", "wrong", "incorrect", "not"}


def normalize(text: str) -> list[str]:
    """Lower-case word tokens with ASR spellings unified ("p.m." -> "pm", "7:30" -> "7 : 30" kept whole)."""
    text = text.lower().replace("p.m.", "pm").replace("a.m.", "am").replace("o'clock", "oclock")
    text = re.sub(r"\(\d+\)", "", text)  # pocketsphinx alternate-pronunciation markers
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    text = re.sub(r"(\d)\s*(am|pm)\b", r"\1 \2", text)
    text = re.sub(r"[^a-z0-9:'\- ]", " ", text)
    words: list[str] = []
    for word in text.split():
        if "-" in word and word not in NATO and word != "-":
            words.extend(p for p in word.split("-") if p)  # "twenty-one" -> "twenty one"
        else:
            words.append(word)
    return words


def _number_at(words: list[str], i: int) -> tuple[int, int] | None:
    """(value, words consumed) for a cardinal number starting at ``i``: "7", "seven", "twenty one"."""
    if i >= len(words):
        return None
    w = words[i]
    if w.isdigit():
        return int(w), 1
    if w in TENS:
        if i + 1 < len(words) and words[i + 1] in _NUMBER_WORDS and 0 < _NUMBER_WORDS[words[i + 1]] < 10:
            return TENS[w] + _NUMBER_WORDS[words[i + 1]], 2
        return TENS[w], 1
    if w in _NUMBER_WORDS:
        return _NUMBER_WORDS[w], 1
    return None


def _ordinal_at(words: list[str], i: int) -> tuple[int, int] | None:
    """(day, words consumed) for "12", "twelfth", "twenty first", "third"."""
    if i >= len(words):
        return None
    w = words[i]
    if w.isdigit() and 1 <= int(w) <= 31:
        return int(w), 1
    if w in TENS and i + 1 < len(words) and words[i + 1] in _ORDINALS and _ORDINALS[words[i + 1]] < 10:
        return TENS[w] + _ORDINALS[words[i + 1]], 2
    if w in _ORDINALS:
        return _ORDINALS[w], 1
    return None


# ---------------------------------------------------------------------------------------------------
# party size

_PEOPLE = {"people", "guests", "persons", "person", "of us", "diners", "adults", "seats"}
_PARTY_CUES = ("for", "party of", "table for", "make it", "change it to", "group of", "be")


def parse_party_size(words: list[str], *, expecting: bool = False) -> int | None:
    """Party size from "for four", "four people", "party of 6", "just me"; a bare number only when asked."""
    text = " ".join(words)
    if re.search(r"\bjust (me|myself|one)\b|\bonly me\b|\bby myself\b|\bmyself\b", text):
        return 1
    if re.search(r"\b(me and my (wife|husband|partner|friend))\b|\bthe two of us\b|\bcouple\b", text):
        return 2
    for i in range(len(words)):
        got = _number_at(words, i)
        if got is None:
            continue
        value, used = got
        after = " ".join(words[i + used : i + used + 2])
        before = " ".join(words[max(0, i - 2) : i])
        nxt = words[i + used] if i + used < len(words) else ""
        if nxt in {"pm", "am", "oclock", "thirty", "fifteen", "forty", "o"} or nxt in MONTHS or nxt == ":":
            continue
        if any(after.startswith(p) for p in _PEOPLE) or any(before.endswith(c) for c in _PARTY_CUES):
            if before.endswith("at") or (before.endswith("for") and _looks_like_time_after(words, i + used)):
                continue
            return value
    if expecting:
        got = next((_number_at(words, i) for i in range(len(words)) if _number_at(words, i)), None)
        if got is not None and len(words) <= 4:
            return got[0]
    return None


def _looks_like_time_after(words: list[str], j: int) -> bool:
    return j < len(words) and words[j] in {"pm", "am", "oclock", "thirty", "fifteen", "forty"}


# ---------------------------------------------------------------------------------------------------
# dates


def parse_date(words: list[str], today: date) -> date | None:
    """A calendar date from "today", "tomorrow", "friday", "next friday", "the 12th", "december 3rd"."""
    text = " ".join(words)
    if "day after tomorrow" in text:
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", text):
        return today + timedelta(days=1)
    if re.search(r"\b(today|tonight|this evening)\b", text):
        return today
    for i, w in enumerate(words):
        if w in MONTHS and not (w == "may" and _may_is_verb(words, i)):
            month = MONTHS.index(w) + 1
            got = _ordinal_at(words, i + 1) or _ordinal_at(words, i + 2) if i + 1 < len(words) else None
            if got is None and i + 1 < len(words) and words[i + 1] == "the":
                got = _ordinal_at(words, i + 2)
            if got is None:  # "the third of december", "3 of december"
                j = i - 1
                if j >= 0 and words[j] == "of":
                    j -= 1
                for start in (j - 1, j):
                    if start >= 0:
                        cand = _ordinal_at(words, start)
                        if cand and start + cand[1] - 1 == j:
                            got = cand
                            break
            if got is not None:
                return _future_month_day(today, month, got[0])
    for i, w in enumerate(words):
        if w in WEEKDAYS:
            target = WEEKDAYS.index(w)
            ahead = (target - today.weekday()) % 7
            result = today + timedelta(days=ahead)
            # "next friday": the one in next calendar week (read back to the guest for confirmation).
            if i > 0 and words[i - 1] == "next" and (ahead == 0 or target > today.weekday()):
                result += timedelta(days=7)
            return result
    for i, w in enumerate(words):
        if w == "the" or (w == "on" and i + 1 < len(words)):
            got = _ordinal_at(words, i + 1)
            if got and (got[1] > 1 or words[i + 1] in _ORDINALS or words[i + 1].isdigit()):
                nxt = i + 1 + got[1]
                not_a_day = nxt < len(words) and words[nxt] in {"pm", "am", "oclock", "people", "guests", "of"}
                if not_a_day and not (words[nxt] == "of" and nxt + 1 < len(words) and words[nxt + 1] in MONTHS):
                    continue
                if words[i + 1].isdigit() or words[i + 1] in _ORDINALS or got[1] == 2:
                    return _future_day_of_month(today, got[0])
    return None


def _may_is_verb(words: list[str], i: int) -> bool:
    return i + 1 < len(words) and words[i + 1] in {"i", "we", "have", "be", "book"}


def _future_month_day(today: date, month: int, day: int) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


def _future_day_of_month(today: date, day: int) -> date | None:
    year, month = today.year, today.month
    for _ in range(3):
        try:
            candidate = date(year, month, day)
            if candidate >= today:
                return candidate
        except ValueError:
            pass
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


# ---------------------------------------------------------------------------------------------------
# times


def parse_time(words: list[str], *, opening_hour: int = 11, expecting: bool = False) -> str | None:
    """HH:MM from "seven pm", "19:30", "half past seven", "quarter to eight", "seven thirty", "noon".

    An hour without am/pm is read within restaurant hours: 1–10 mean the evening, 11 the morning.
    """
    text = " ".join(words)
    m = re.search(r"\b(\d{1,2}):(\d{2})\b", text)
    if m:
        return _fmt(int(m.group(1)), int(m.group(2)), None, opening_hour)
    if re.search(r"\b(noon|midday|lunchtime)\b", text):
        return "12:00"
    for i, w in enumerate(words):
        minute_words = {"half": 30, "quarter": 15}
        if w in minute_words and i + 2 < len(words) and words[i + 1] in {"past", "after", "to"}:
            got = _number_at(words, i + 2)
            if got and 1 <= got[0] <= 23:
                hour, minute = got[0], minute_words[w]
                if words[i + 1] == "to":
                    hour, minute = hour - 1, 60 - minute
                return _fmt(hour, minute, _meridiem(words, i + 2 + got[1]), opening_hour)
    for i in range(len(words)):
        got = _number_at(words, i)
        if got is None or not 1 <= got[0] <= 23:
            continue
        hour, used = got
        j = i + used
        minute = 0
        nxt = words[j] if j < len(words) else ""
        if nxt == "oclock":
            return _fmt(hour, 0, _meridiem(words, j + 1), opening_hour)
        if nxt in {"o", "oh"} and j + 1 < len(words):
            got_m = _number_at(words, j + 1)
            if got_m and got_m[0] < 10:
                minute, j = got_m[0], j + 1 + got_m[1]
        elif nxt in {"fifteen", "thirty", "forty", "forty five", "twenty", "ten", "fifty"} or nxt in TENS:
            got_m = _number_at(words, j)
            if got_m and got_m[0] < 60:
                minute, j = got_m[0], j + got_m[1]
        elif nxt == "hundred" and hour >= 11:
            j += 1
        mer = _meridiem(words, j)
        before = words[i - 1] if i > 0 else ""
        if mer is not None or before in {"at", "around", "about", "by"} or minute or words[j - 1] == "hundred":
            return _fmt(hour, minute, mer, opening_hour)
        if expecting and len(words) <= 4 and hour <= 12:
            return _fmt(hour, minute, mer, opening_hour)
    return None


def _meridiem(words: list[str], j: int) -> str | None:
    rest = " ".join(words[j : j + 4])
    if rest.startswith(("pm", "p m", "in the evening", "tonight", "at night", "in the afternoon")):
        return "pm"
    if rest.startswith(("am", "a m", "in the morning")):
        return "am"
    return None


def _fmt(hour: int, minute: int, meridiem: str | None, opening_hour: int) -> str | None:
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    elif meridiem is None and hour < 12 and hour < opening_hour:
        hour += 12  # "at seven" in a restaurant means the evening
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return f"{hour:02d}:{minute:02d}"


# ---------------------------------------------------------------------------------------------------
# names

_STRONG_NAME_CUES = (r"my name is", r"my name's", r"the name is", r"name is", r"under the name( of)?", r"call me",
                     r"name's")
_WEAK_NAME_CUES = (r"under", r"this is", r"it's", r"it is", r"i am", r"i'm")
_NAME_STOP = {"and", "for", "on", "at", "please", "tomorrow", "today", "people", "guests", "a", "the", "table",
              "thanks", "thank", "you", "to", "book", "is", "it", "that's", "yes", "no", "i", "would", "like",
              "of", "pm", "am", "p.m.", "a.m.", "oclock", "next", "this", "what", "sorry", "can", "could", "do",
              "does", "how", "when", "where", "why", "who", "there", "in", "be", "not", "make", "change"}
_NOT_NAMES = _NAME_STOP | set(MONTHS) | set(WEEKDAYS) | set(_NUMBER_WORDS) | {
    "hello", "hi", "yeah", "okay", "sure", "reservation", "booking", "name", "my", "me", "we", "oh", "um", "uh",
    "well", "it's", "i'm", "just", "so", "er"}


def parse_name(words: list[str], *, expecting: bool = False, known: set[str] | None = None) -> str | None:
    """A guest name after a cue ("my name is alice smith", "under jones"), or the answer when asked for it.

    A strong cue ("my name is") takes any following words. Weak cues ("it's", "under") and un-cued answers
    need ``known`` name words unless the engine is ``expecting`` a name, so "it's seven pm" is no name.
    """
    text = " ".join(words)
    for cue in _STRONG_NAME_CUES:
        m = re.search(rf"\b(?:{cue}) (?P<tail>.+)", text)
        if m:
            name = _take_name(m.group("tail").split(), None)
            if name:
                return name
    for cue in _WEAK_NAME_CUES:
        m = re.search(rf"\b(?:{cue}) (?P<tail>.+)", text)
        if m:
            tail = m.group("tail").split()
            if (known is not None and tail[0] in known) or (expecting and len(words) <= 5):
                name = _take_name(tail, None if expecting else known)
                if name:
                    return name
    if expecting and len(words) <= 4:
        return _take_name(words, known)
    if known is not None and len(words) <= 3 and all(w in known for w in words):
        return _take_name(words, known)
    return None


def _take_name(words: list[str], known: set[str] | None) -> str | None:
    taken: list[str] = []
    for w in words:
        if w in _NOT_NAMES or w.isdigit() or (known is not None and w not in known):
            if taken:
                break
            continue
        taken.append(w)
        if len(taken) == 3:
            break
    if not taken:
        return None
    return " ".join(t.capitalize() for t in taken)


# ---------------------------------------------------------------------------------------------------
# booking ids

BOOKING_ID_RE = re.compile(r"^BK-[A-Z0-9]{6,16}$")


def parse_booking_id(words: list[str]) -> str | None:
    """'BK-XXXXXXXXXX' from spoken symbols: "b k seven a three ...", NATO words, digits, "double three"."""
    symbols: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        rep = 1
        if w in {"double", "triple"} and i + 1 < len(words):
            rep, i, w = (2 if w == "double" else 3), i + 1, words[i + 1]
        sym = NATO.get(w) or DIGIT_WORDS.get(w) or (LETTERS.get(w) if len(w) == 1 else None)
        if sym is None and w.isdigit():
            sym = w
        if sym is None and re.fullmatch(r"bk[a-z0-9]+", w):
            sym = w.upper()
        if sym is not None:
            symbols.append(sym * rep)
        elif symbols and w not in {"dash", "hyphen", "and", "then"}:
            symbols = []  # a non-symbol word breaks the run: keep the last contiguous run only
        i += 1
    code = "".join(symbols)
    if code.startswith("BK") and len(code) > 10:
        code = code[2:]
    # Ids are base32 (A-Z, 2-7): "oh"/"zero" can only mean the letter O, "one" the letter I.
    code = code.replace("0", "O").replace("1", "I")
    if len(code) < 6:
        return None
    return f"BK-{code[-10:]}"


# ---------------------------------------------------------------------------------------------------
# intents


@dataclass(frozen=True, slots=True)
class Intents:
    yes: bool
    no: bool
    book: bool
    lookup: bool
    cancel: bool
    repeat: bool
    availability: bool
    goodbye: bool
    change: bool
    greeting: bool  # "hi there", "hello", "good evening"
    small_talk: bool  # "how are you", "how's it going"


_GREETING = re.compile(r"\b(hi|hello|hey|hiya|good (morning|afternoon|evening|day))\b")
_SMALL_TALK = re.compile(r"\b(how are you|how are things|how's it going|how is it going|how do you do|"
                         r"how you doing|how are you doing|nice to (meet|talk to) you|what's up)\b")


def parse_intents(words: list[str]) -> Intents:
    text = " ".join(words)
    ws = set(words)
    return Intents(
        yes=bool(ws & YES_WORDS) and not re.search(r"\b(not right|not correct)\b", text),
        no=bool(ws & NO_WORDS) or bool(re.search(r"\b(that's wrong|never mind|forget it)\b", text)),
        book=bool(re.search(r"\b(book|reserve|reservation|table for|a table|make a booking)\b", text)),
        lookup=bool(re.search(r"\b(look up|check my|find my|what is my|details of my|check on my|look at my)\b",
                              text)),
        cancel=bool(re.search(r"\bcancel", text)),
        repeat=bool(re.search(r"\b(say that again|repeat|pardon|come again|what did you say|once more)\b", text)),
        availability=bool(re.search(r"\b(available|availability|free table|any tables|have a table)\b", text)),
        goodbye=bool(re.search(r"\b(goodbye|bye|that's all|that is all|nothing else)\b", text)),
        change=bool(re.search(r"\b(change|make it|actually|instead)\b", text)),
        greeting=bool(_GREETING.search(text)),
        small_talk=bool(_SMALL_TALK.search(text)),
    )


# Words a request does not end on: the guest paused mid-sentence ("a table for ... four"). Greeting words
# alone are an opening, not a request ("hi there ... i would like to book"): both hold the end of turn.
# Not "the", "a", "i", "um": pocketsphinx inserts those on trailing silence of voices it was not tuned on
# ("next friday i"), and holding every such turn cost 400 ms (bench/engine.py).
_CONTINUES = {"and", "or", "but", "for", "at", "to", "on", "in", "of", "my", "is", "with", "about", "around",
              "would", "like", "want", "i'd", "we'd", "could", "can", "make", "book", "under"}
_OPENING = {"hi", "hello", "hey", "hiya", "there", "good", "morning", "afternoon", "evening", "oh", "um", "uh",
            "well", "so"}


_SMALL_TALK_WORDS = _OPENING | {"how", "are", "you", "doing", "things", "how's", "it", "going", "is", "do", "nice",
                                "to", "meet", "talk", "what's", "up", "day", "thank", "thanks", "i", "i'm",
                                "fine", "very", "well", "today", "tonight", "and"}


def is_small_talk(words: list[str]) -> bool:
    """A greeting or pleasantry and nothing else ("hi there", "good evening, how are you")."""
    intents = parse_intents(words)
    return bool(words) and (intents.greeting or intents.small_talk) and all(w in _SMALL_TALK_WORDS for w in words)


def is_fragment(text: str) -> bool:
    """Whether recognised text looks like the first part of a sentence, so the end of turn should wait longer.

    Pure and cheap (the recogniser calls it on its worker thread for every utterance).
    """
    words = normalize(text)
    if not words:
        return False
    return words[-1] in _CONTINUES or all(w in _OPENING for w in words)


# ---------------------------------------------------------------------------------------------------
# speaking numbers, dates and times back (the TTS reads words more reliably than symbols)


def number_words(n: int) -> str:
    if n < 20:
        return UNITS[n]
    tens, unit = divmod(n, 10)
    word = next(w for w, v in TENS.items() if v == tens * 10) if tens < 6 else str(n)
    return word if unit == 0 else f"{word} {UNITS[unit]}"


def ordinal_words(n: int) -> str:
    if n < 20:
        return ORDINAL_UNITS[n]
    if n in (20, 30):
        return "twentieth" if n == 20 else "thirtieth"
    tens, unit = divmod(n, 10)
    return f"{number_words(tens * 10)} {ORDINAL_UNITS[unit]}"


def say_date(d: date, today: date | None = None) -> str:
    base = f"{WEEKDAYS[d.weekday()].capitalize()}, {MONTHS[d.month - 1].capitalize()} {ordinal_words(d.day)}"
    if today is not None and d == today:
        return f"today, {base}"
    if today is not None and d == today + timedelta(days=1):
        return f"tomorrow, {base}"
    return base


def say_time(hhmm: str) -> str:
    hour, minute = (int(p) for p in hhmm.split(":"))
    if hour == 12 and minute == 0:
        return "noon"
    suffix = "p.m." if hour >= 12 else "a.m."
    h12 = hour % 12 or 12
    if minute == 0:
        return f"{number_words(h12)} {suffix}"
    if minute < 10:
        return f"{number_words(h12)} oh {number_words(minute)} {suffix}"
    return f"{number_words(h12)} {number_words(minute)} {suffix}"


def say_booking_id(booking_id: str) -> str:
    """Spell an id symbol by symbol ("B K, 7 A 3 ..."), in groups so it is easy to write down."""
    code = booking_id.removeprefix("BK-")
    groups = [code[i : i + 4] for i in range(0, len(code), 4)]
    return "B K, " + ", ".join(" ".join(g) for g in groups)
