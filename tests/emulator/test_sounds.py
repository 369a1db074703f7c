"""Where the emulated Asterisk finds a recording, and what SAY plays (:mod:`emulator.sounds`).

The captured cases (``agi_language_say.txt``: ``cy`` falls back to ``en``, ``en`` never reads
``cy``; SAY NUMBER 12 / 21 and SAY DIGITS 123 / 4 in ``cy`` play the English digit files) are
checked on the wire in ``tests/fastagi/test_language_say_conformance.py``; the rest here follows
main/file.c ``fileexists_core`` and main/say.c ``get_number_str_en``."""

from __future__ import annotations

import pytest

from emulator.agi import DEFAULT_PROMPT_SAMPLES, CallerScript
from emulator.sounds import digit_files, find, lookup_order, number_files, number_rules_warning


@pytest.mark.parametrize(
    ("language", "order"),
    [
        ("cy", ["cy/x", "x", "en/x"]),
        ("en", ["en/x", "x"]),
        ("en_GB", ["en_GB/x", "en/x", "x"]),  # the dialect cut off; en not tried twice
        ("cy_GB_north", ["cy_GB_north/x", "cy_GB/x", "cy/x", "x", "en/x"]),
        ("", ["x", "en/x"]),
    ],
)
def test_the_lookup_order(language: str, order: list[str]) -> None:
    assert lookup_order("x", language) == order


def test_an_absolute_path_has_no_language() -> None:
    assert lookup_order("/var/spool/greeting", "cy") == ["/var/spool/greeting"]


def test_found_where_asterisk_finds_it() -> None:
    there = {"en/vm-goodbye", "cy/cr-croeso", "cy/hello-world", "en/hello-world", "beep"}.__contains__
    assert find("vm-goodbye", "cy", there) == "en/vm-goodbye"
    assert find("cr-croeso", "en", there) is None
    assert find("hello-world", "cy", there) == "cy/hello-world"
    assert find("beep", "cy", there) == "beep"  # outside any language directory: before en/


@pytest.mark.parametrize(
    ("number", "files"),
    [
        (0, ["digits/0"]),
        (12, ["digits/12"]),
        (21, ["digits/20", "digits/1"]),
        (112, ["digits/1", "digits/hundred", "digits/12"]),
        (1234, ["digits/1", "digits/thousand", "digits/2", "digits/hundred", "digits/30", "digits/4"]),
        (2_000_005, ["digits/2", "digits/million", "digits/5"]),
        (-5, ["digits/minus", "digits/5"]),
    ],
)
def test_say_number_by_the_english_rules(number: int, files: list[str]) -> None:
    assert number_files(number) == files


def test_say_digits_is_a_file_a_character() -> None:
    assert digit_files("07*#") == ["digits/0", "digits/7", "digits/star", "digits/pound"]


def test_only_a_language_say_does_not_know_warns() -> None:
    assert number_rules_warning("en") is None
    assert number_rules_warning("en_GB") is None
    assert number_rules_warning("cy") == "say.c: Language cy not currently supported, defaulting to English"


def test_a_script_without_a_welsh_recording_of_one_prompt() -> None:
    """Every prompt in every language but ``cy/harborough/welcome``: a Welsh channel plays the
    English one; a name missing everywhere is found nowhere."""
    script = CallerScript(missing_prompts=frozenset({"cy/harborough/welcome", "cr-nowhere"}))
    assert script.recording("harborough/welcome", "cy") == ("en/harborough/welcome", DEFAULT_PROMPT_SAMPLES)
    assert script.recording("harborough/welcome", "en") == ("en/harborough/welcome", DEFAULT_PROMPT_SAMPLES)
    assert script.recording("harborough/menu", "cy") == ("cy/harborough/menu", DEFAULT_PROMPT_SAMPLES)
    assert script.recording("cr-nowhere", "cy") is None
