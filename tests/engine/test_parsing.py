"""What the engine understands from recognised words: the dates, times, party sizes, names and ids a
guest says. A wrong parse here is a wrong booking, so these are checked one phrase at a time."""

from __future__ import annotations

from datetime import date

import pytest

from runtime.engine.lm.corpus import NAMES
from runtime.engine.parsing import (
    normalize,
    parse_booking_id,
    parse_date,
    parse_name,
    parse_party_size,
    parse_time,
    say_booking_id,
    say_time,
)

SATURDAY = date(2026, 11, 21)


@pytest.mark.parametrize(("phrase", "expected"), [
    ("today", date(2026, 11, 21)),
    ("tomorrow", date(2026, 11, 22)),
    ("the day after tomorrow", date(2026, 11, 23)),
    ("friday", date(2026, 11, 27)),
    ("on tuesday", date(2026, 11, 24)),
    ("next friday", date(2026, 11, 27)),  # Saturday today: the coming Friday is already next week
    ("next saturday", date(2026, 11, 28)),
    ("the twelfth", date(2026, 12, 12)),  # past this month -> next month
    ("the twenty third", date(2026, 11, 23)),
    ("december third", date(2026, 12, 3)),
    ("december 3rd", date(2026, 12, 3)),
    ("the third of december", date(2026, 12, 3)),
    ("january the second", date(2027, 1, 2)),  # already past this year -> next year
    ("a table for four people", None),
])
def test_dates_resolve_to_the_next_matching_day(phrase: str, expected: date | None) -> None:
    assert parse_date(normalize(phrase), SATURDAY) == expected


def test_next_weekday_means_next_week_when_the_day_is_still_ahead_this_week() -> None:
    monday = date(2026, 11, 23)
    assert parse_date(normalize("friday"), monday) == date(2026, 11, 27)
    assert parse_date(normalize("next friday"), monday) == date(2026, 12, 4)


@pytest.mark.parametrize(("phrase", "expected"), [
    ("seven pm", "19:00"),
    ("at seven p.m.", "19:00"),
    ("7 pm", "19:00"),
    ("19:30", "19:30"),
    ("half past seven", "19:30"),
    ("quarter to eight", "19:45"),
    ("quarter past six in the evening", "18:15"),
    ("seven thirty", "19:30"),
    ("at eight", "20:00"),
    ("eight o'clock", "20:00"),
    ("noon", "12:00"),
    ("eleven thirty am", "11:30"),
    ("six oh five pm", "18:05"),
    ("for four people", None),
])
def test_times_are_read_within_restaurant_hours(phrase: str, expected: str | None) -> None:
    assert parse_time(normalize(phrase)) == expected


@pytest.mark.parametrize(("phrase", "expected"), [
    ("a table for four people tomorrow at seven pm", 4),
    ("for 6", 6),
    ("party of twelve", 12),
    ("make it five people", 5),
    ("there will be three of us", 3),
    ("just me", 1),
    ("for two at seven pm", 2),
    ("tomorrow at seven pm", None),
])
def test_party_size_in_words_or_digits(phrase: str, expected: int | None) -> None:
    assert parse_party_size(normalize(phrase)) == expected


def test_a_bare_number_is_a_party_size_only_when_asked_for_one() -> None:
    assert parse_party_size(normalize("four"), expecting=True) == 4
    assert parse_party_size(normalize("four")) is None


def test_names_need_a_cue_or_a_question() -> None:
    known = set(NAMES)
    assert parse_name(normalize("my name is alice smith"), known=known) == "Alice Smith"
    assert parse_name(normalize("under the name bob jones please"), known=known) == "Bob Jones"
    assert parse_name(normalize("it's seven pm"), known=known) is None
    assert parse_name(normalize("what time do you close"), known=known, expecting=False) is None
    assert parse_name(normalize("carol white"), known=known, expecting=True) == "Carol White"


def test_booking_ids_from_letters_digits_and_nato_words() -> None:
    assert parse_booking_id(normalize("b k seven a three q z two m six x")) == "BK-7A3QZ2M6X"
    assert parse_booking_id(normalize("bravo kilo alfa mike two romeo six echo sierra kilo four kilo")) \
        == "BK-AM2R6ESK4K"
    assert parse_booking_id(normalize("it's b k a b c d e f g h i j")) == "BK-ABCDEFGHIJ"
    assert parse_booking_id(normalize("yes please")) is None


def test_spoken_forms_are_tts_friendly() -> None:
    assert say_time("19:30") == "seven thirty p.m."
    assert say_time("12:00") == "noon"
    assert say_booking_id("BK-AM2R6ESK4K") == "B K, A M 2 R, 6 E S K, 4 K"
