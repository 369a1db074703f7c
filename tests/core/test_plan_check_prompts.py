"""``callrouter plan check --prompts DIR``: prompts with no recording in a tenant's language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from callrouter.cli import main
from routing.core.prompts import CALLBACK_PROMPTS, WAIT_SOUNDS, tenant_prompts
from routing.plan_file import load_plan

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"


def bilingual(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["tenants"]["harborough"]["languages"] = ["cy", "en"]
    target = tmp_path / "plan.yaml"
    target.write_text(yaml.safe_dump(data, default_style='"', sort_keys=False))
    return target


def every_recording(plan: Path, sounds: Path, *, leave_out: tuple[str, ...] = ()) -> None:
    """A recording of every prompt the plan names, in each of its tenant's languages (Asterisk's
    layout, a mix of formats), except ``leave_out`` (``language/prompt``)."""
    loaded = load_plan(plan).plan
    assert loaded is not None
    for i, tenant in enumerate(loaded.tenants.values()):
        for language in tenant.languages:
            for _, prompt in tenant_prompts(tenant):
                if f"{language}/{prompt}" in leave_out:
                    continue
                target = sounds / language / f"{prompt}.{('wav', 'gsm', 'sln16')[i % 3]}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"RIFF")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_recording_there_is_clean(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = bilingual(tmp_path)
    every_recording(plan, tmp_path / "sounds")
    code, out, err = run(capsys, "plan", "check", str(plan), "--prompts", str(tmp_path / "sounds"))
    assert (code, err) == (0, "")
    assert "OK (2 tenants" in out


def test_missing_welsh_recordings_are_problems_with_their_plan_paths(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A Welsh menu prompt and the Welsh language choice missing, an English one in a file with
    no format: each reported at its place in the plan, with the file looked for; exit 1."""
    plan = bilingual(tmp_path)
    sounds = tmp_path / "sounds"
    every_recording(
        plan,
        sounds,
        leave_out=("cy/harborough/main-menu", "cy/harborough/language-choice", "en/charnwood/welcome"),
    )
    (sounds / "en" / "charnwood" / "welcome").write_bytes(b"no extension: not a recording Asterisk plays")
    code, out, err = run(capsys, "plan", "check", str(plan), "--prompts", str(sounds))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 3
    assert any(
        line.endswith(
            "tenants.harborough.menus.main.prompt: prompt 'harborough/main-menu' has no recording in cy "
            "(looked for cy/harborough/main-menu.*)"
        )
        and line.startswith("plan.yaml:")
        for line in lines
    )
    assert any("tenants.harborough.languages: prompt 'harborough/language-choice' has no recording in cy" in x
               for x in lines)  # fmt: skip
    assert any("tenants.charnwood.menus.main.greeting: prompt 'charnwood/welcome' has no recording in en" in x
               for x in lines)  # fmt: skip


def test_missing_prompts_as_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = bilingual(tmp_path)
    sounds = tmp_path / "sounds"
    every_recording(plan, sounds, leave_out=("en/harborough/survey-thanks",))
    code, out, _ = run(capsys, "plan", "check", str(plan), "--prompts", str(sounds), "--json")
    data = json.loads(out)
    assert (code, data["ok"]) == (1, False)
    assert [(p["path"], p["severity"]) for p in data["problems"]] == [
        ("tenants.harborough.survey.thanks_prompt", "error")
    ]


def test_an_empty_folder_reports_everything_without_crashing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "sounds").mkdir()
    code, _, err = run(capsys, "plan", "check", str(EXAMPLE), "--prompts", str(tmp_path / "sounds"))
    assert code == 1
    assert "prompt 'harborough/main-menu' has no recording in en" in err


def test_a_prompt_folder_that_is_not_there_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "plan", "check", str(EXAMPLE), "--prompts", str(tmp_path / "nowhere"))
    assert code == 2
    assert "is not a folder" in err


def test_without_prompts_the_check_is_as_before(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "plan", "check", str(bilingual(tmp_path)))
    assert code == 0
    assert "OK (2 tenants, 0 warnings)" in out


def test_explain_names_the_language_choice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A bilingual council: explain says the choice comes first, with its keys and default."""
    plan = str(bilingual(tmp_path))
    code, out, _ = run(
        capsys, "plan", "explain", plan, "--number", "01632 960001", "--at", "2026-11-24 10:00"
    )
    assert code == 0
    assert (
        out.splitlines()[-1]
        == "   language choice first (harborough/language-choice): 1 cy, 2 en; no key: cy"
    )
    _, out, _ = run(capsys, "plan", "explain", EXAMPLE.as_posix(), "--number", "01632 960001",
                    "--at", "2026-11-24 10:00", "--json")  # fmt: skip
    assert "language_choice" not in json.loads(out)


def with_callback_and_announcements(tmp_path: Path) -> Path:
    plan = bilingual(tmp_path)
    data = yaml.safe_load(plan.read_text())
    queue = next(iter(data["tenants"]["harborough"]["queues"].values()))
    queue["callback"] = {"offer_above_s": "300"}
    queue["announce_wait"] = {"every_s": "60"}
    plan.write_text(yaml.safe_dump(data, sort_keys=False).replace("'300'", "300").replace("'60'", "60"))
    return plan


def test_the_callbacks_recordings_and_the_waits_sounds_are_checked_in_each_language(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A queue with a callback needs the prompt set's callback recordings, one with wait
    announcements Asterisk's queue sounds, in every language of the council: a Welsh callback
    goodbye and the Welsh "minutes" missing are each reported at the queue."""
    plan = with_callback_and_announcements(tmp_path)
    sounds = tmp_path / "sounds"
    every_recording(plan, sounds, leave_out=("cy/harborough/callback-goodbye", "cy/queue-minutes"))
    code, out, _err = run(capsys, "plan", "check", str(plan), "--prompts", str(sounds), "--json")
    assert code == 1
    messages = [p["message"] for p in json.loads(out)["problems"]]
    assert any("'harborough/callback-goodbye' has no recording in cy" in m for m in messages)
    assert any("'queue-minutes' has no recording in cy" in m for m in messages)
    assert len(messages) == 2


def test_the_ivr_plays_only_the_callback_and_wait_prompts_plan_check_knows() -> None:
    """The names the wait loop plays are the ones ``plan check --prompts`` looks for."""
    ivr = Path(__file__).parents[2] / "ivr"
    text = (ivr / "wait_loop.py").read_text() + (ivr / "controller.py").read_text()
    played = set(re.findall(r'prompt_name\([^,]+, "([a-z-]+)"\)', text))
    streamed = set(re.findall(r'stream_file\("([a-z-]+)"\)', (ivr / "wait_loop.py").read_text()))
    assert played
    assert streamed
    assert played <= set(CALLBACK_PROMPTS)
    assert streamed <= set(WAIT_SOUNDS)


def test_the_figures_asterisk_says_are_checked_in_each_language(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Positions and minutes are said with SAY NUMBER, the callback's number with SAY DIGITS:
    Asterisk's ``digits/*`` files in the channel's language, English for a Welsh channel that has
    none. A council without Welsh figures is told, at the queue."""
    plan = with_callback_and_announcements(tmp_path)
    sounds = tmp_path / "sounds"
    every_recording(plan, sounds, leave_out=("cy/digits/7", "cy/digits/hundred"))
    code, out, _err = run(capsys, "plan", "check", str(plan), "--prompts", str(sounds), "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    messages = sorted(p["message"].split(" (")[0] for p in problems)
    assert messages == [
        "prompt 'digits/7' has no recording in cy",  # the callback's read-back
        "prompt 'digits/7' has no recording in cy",  # the wait's figures
        "prompt 'digits/hundred' has no recording in cy",
    ]


def test_plan_check_knows_every_file_the_emulated_say_plays() -> None:
    """The emulator says figures as Asterisk 22 does (``emulator/sounds.py``, from
    ``agi_language_say.txt``): every file it plays for a position or a wait of up to 999, and for
    any digit, is one ``plan check`` looks for."""
    from emulator.sounds import digit_files, number_files
    from routing.core.prompts import SAY_DIGITS_SOUNDS, SAY_NUMBER_SOUNDS

    assert {f for n in range(1000) for f in number_files(n)} <= set(SAY_NUMBER_SOUNDS)
    assert set(digit_files("0123456789")) <= set(SAY_DIGITS_SOUNDS)
