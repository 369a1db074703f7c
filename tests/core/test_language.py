"""The language choice: its defaults, its checks, its driver, and the prompts a plan names (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.language_driver import language_script
from ivr.menu_driver import ALL_KEYS, Command, Key, SetLanguage, StreamFile, WaitForDigit
from routing.core.language import ChoiceSpec, LanguageOutcome, call_language, choice_for, choice_spec, single
from routing.core.plan import ExternalDest, Plan, QueueDest
from routing.core.problems import Problem
from routing.core.prompts import missing_prompts, tenant_prompts
from routing.core.validate import relations
from tests.core.plans import plan_data

QUEUE = QueueDest(type="queue", queue="main")


def tenant(**fields: Any) -> Any:
    return Plan.model_validate(plan_data(**fields)).tenants["council"]


def spec(**fields: Any) -> ChoiceSpec:
    found = choice_spec(tenant(**fields))
    assert found is not None
    return found


def checked(**fields: Any) -> list[str]:
    return [
        f"{p.severity}: {p.path}: {p.message}" for p in relations(Plan.model_validate(plan_data(**fields)))
    ]


def language_problems(**fields: Any) -> list[str]:
    return [line for line in checked(**fields) if "language" in line]


# --- defaults ------------------------------------------------------------------------------------


def test_languages_alone_offer_a_choice_in_the_order_listed() -> None:
    """``languages: [cy, en]``: Welsh spoken first, key 1 Welsh, key 2 English, Welsh by default."""
    found = spec(languages=["cy", "en"])
    assert found.languages == ("cy", "en")
    assert found.keys == (("1", "cy"), ("2", "en"))
    assert (found.prompt, found.timeout_s, found.tries, found.default) == (
        "council/language-choice",
        5,
        2,
        "cy",
    )


def test_the_order_of_languages_is_the_order_spoken_and_the_default() -> None:
    found = spec(languages=["en", "cy"])
    assert (found.languages, found.keys, found.default) == (("en", "cy"), (("1", "en"), ("2", "cy")), "en")


def test_a_single_language_offers_no_choice() -> None:
    """One language: no choice, as before; the call is in that language."""
    assert choice_spec(tenant(languages=["cy"])) is None
    assert single(tenant(languages=["cy"])) == LanguageOutcome("cy", "single")
    assert choice_for(tenant(), QUEUE, prelude=False) is None


def test_keys_prompt_timeout_and_default_as_the_plan_gives_them() -> None:
    found = spec(
        languages=["cy", "en"],
        language_choice={
            "keys": {"2": "en", "1": "cy", "9": "cy"},
            "prompt": "council/dewis-iaith",
            "timeout_s": 8,
            "tries": 3,
            "on_timeout": "en",
        },
    )
    assert found.keys == (("1", "cy"), ("9", "cy"), ("2", "en"))  # in the order of languages
    assert (found.prompt, found.timeout_s, found.tries, found.default) == ("council/dewis-iaith", 8, 3, "en")
    assert [found.language_for(k) for k in ("1", "9", "2", "3", None)] == ["cy", "cy", "en", None, None]


def test_no_choice_before_a_call_dialled_straight_out() -> None:
    """Out of hours to an external service with no prompt of ours: the far end speaks first."""
    welsh = tenant(languages=["cy", "en"])
    out = ExternalDest(type="external", number="+441632960999")
    assert choice_for(welsh, out, prelude=False) is None
    assert single(welsh) == LanguageOutcome("cy", "not_offered")
    assert choice_for(welsh, out, prelude=True) is not None
    assert choice_for(welsh, QUEUE, prelude=False) is not None


def test_the_language_of_a_later_route_is_the_channels_when_it_is_the_tenants() -> None:
    """A later route reads the channel's language (agi_language); anything else: the default."""
    welsh = tenant(languages=["cy", "en"])
    assert [call_language(welsh, x) for x in ("en", "cy", "fr", "")] == ["en", "cy", "cy", "cy"]
    assert call_language(tenant(languages=["en"]), "cy") == "en"


# --- checks --------------------------------------------------------------------------------------


def test_a_clean_bilingual_tenant_has_no_language_problem() -> None:
    assert language_problems(languages=["cy", "en"]) == []
    assert language_problems(languages=["cy", "en"], language_choice={"keys": {"1": "cy", "2": "en"}}) == []


def test_language_problems_each_at_its_path() -> None:
    found = language_problems(
        languages=["cy", "en", "cy"],
        language_choice={"keys": {"1": "cy", "3": "fr"}, "on_timeout": "de"},
    )
    not_listed = "is not one of the tenant's languages (cy, en)"
    assert found == [
        "error: tenants.council.languages[2]: language 'cy' is listed twice",
        f"error: tenants.council.language_choice.keys.\"3\": 'fr' {not_listed}",
        "error: tenants.council.language_choice.keys: no key for 'en': callers could not choose it",
        f"error: tenants.council.language_choice.on_timeout: 'de' {not_listed}",
    ]


def test_a_choice_for_a_single_language_is_a_warning() -> None:
    assert language_problems(language_choice={"timeout_s": 4}) == [
        "warning: tenants.council.language_choice: ignored: the tenant has one language, "
        "so no choice is offered"
    ]


def test_more_than_nine_languages_need_their_keys() -> None:
    many = ["cy", "en", "fr", "de", "es", "it", "pl", "ro", "pt", "ar"]
    assert language_problems(languages=many) == [
        "error: tenants.council.language_choice.keys: more than 9 languages: give the keys for them"
    ]


# --- the driver ----------------------------------------------------------------------------------


def run(found: ChoiceSpec, answers: list[Key]) -> tuple[list[Command], LanguageOutcome]:
    """Drive the script: each STREAM FILE / WAIT FOR DIGIT takes the next answer."""
    script = language_script(found)
    commands: list[Command] = []
    result: Key = None
    replies = iter(answers)
    while True:
        try:
            command = script.send(result)
        except StopIteration as end:
            outcome: LanguageOutcome = end.value
            return commands, outcome
        commands.append(command)
        result = None if isinstance(command, SetLanguage) else next(replies)


WELSH = ChoiceSpec(("cy", "en"), (("1", "cy"), ("2", "en")), "council/language-choice", 5, 2, "cy")
PART_CY = [SetLanguage("cy"), StreamFile("council/language-choice", ALL_KEYS)]
PART_EN = [SetLanguage("en"), StreamFile("council/language-choice", ALL_KEYS)]


@pytest.mark.parametrize(("key", "language"), [("1", "cy"), ("2", "en")])
def test_each_key_after_the_prompt(key: str, language: str) -> None:
    """Each part in its own language, then the wait; the key's language is left on the channel."""
    commands, outcome = run(WELSH, [None, None, key])
    assert commands == [*PART_CY, *PART_EN, WaitForDigit(5), SetLanguage(language)]
    assert outcome == LanguageOutcome(language, "chosen", key)


def test_a_key_during_the_welsh_part_chooses_at_once() -> None:
    """A caller who knows the key need not hear the English part."""
    commands, outcome = run(WELSH, ["2"])
    assert commands == [*PART_CY, SetLanguage("en")]
    assert outcome == LanguageOutcome("en", "chosen", "2")


def test_an_invalid_key_asks_again() -> None:
    commands, outcome = run(WELSH, ["7", None, None, "2"])
    assert commands == [*PART_CY, *PART_CY, *PART_EN, WaitForDigit(5), SetLanguage("en")]
    assert outcome == LanguageOutcome("en", "chosen", "2")


def test_invalid_keys_every_try_take_the_default() -> None:
    commands, outcome = run(WELSH, ["7", "#"])
    assert commands[-1] == SetLanguage("cy")
    assert outcome == LanguageOutcome("cy", "invalid")


def test_silence_every_try_takes_the_default() -> None:
    """A caller who presses nothing (a rotary phone) is not lost: the first language."""
    commands, outcome = run(WELSH, [None, None, None] * 2)
    assert commands == [*PART_CY, *PART_EN, WaitForDigit(5)] * 2 + [SetLanguage("cy")]
    assert outcome == LanguageOutcome("cy", "timeout")


# --- prompts a plan names ------------------------------------------------------------------------


def test_every_prompt_of_a_tenant_with_its_path() -> None:
    council = tenant(
        languages=["cy", "en"],
        entry={"type": "announcement", "prompt": "council/croeso", "then": {"type": "menu", "menu": "main"}},
        menus={
            "main": {
                "greeting": "council/welcome",
                "prompt": "council/main-menu",
                "options": {"1": {"type": "queue", "queue": "main"}},
                "on_invalid": {"type": "hangup", "prompt": "council/goodbye"},
                "on_timeout": {"type": "queue", "queue": "main"},
            }
        },
        survey={"prompt": "council/survey"},
    )
    assert sorted(tenant_prompts(council)) == sorted(
        [
            (("languages",), "council/language-choice"),
            (("entry", "prompt"), "council/croeso"),
            (("menus", "main", "greeting"), "council/welcome"),
            (("menus", "main", "prompt"), "council/main-menu"),
            (("menus", "main", "on_invalid", "prompt"), "council/goodbye"),
            (("survey", "prompt"), "council/survey"),
        ]
    )


def test_missing_prompts_name_the_languages_and_the_path() -> None:
    plan = Plan.model_validate(plan_data(languages=["cy", "en"], survey={"prompt": "council/survey"}))
    present = {("en", "council/survey"), ("cy", "council/language-choice"), ("en", "council/language-choice")}
    found = missing_prompts(plan, lambda language, prompt: (language, prompt) in present)
    assert found == [
        Problem.at(
            ("tenants", "council", "survey", "prompt"),
            "prompt 'council/survey' has no recording in cy (looked for cy/council/survey.*)",
        )
    ]
