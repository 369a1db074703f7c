"""Validation: every kind of problem, each reported with its exact path."""

from __future__ import annotations

from pathlib import Path

from routing.core.problems import Problem
from routing.plan_file import load_plan, load_plan_text

EXAMPLE = Path(__file__).parents[2] / "examples" / "plan.yaml"

TENANT: dict[str, str] = {
    "name": '"A Council"',
    "numbers": '["01632 960001"]',
    "prompts": '"council"',
    "entry": "{type: queue, queue: main}",
    "out_of_hours": '{type: external, number: "01632 960999"}',
    "emergency_cover": "{type: queue, queue: main}",
    "queues": '\n      main: {asterisk_queue: "council-main", failover: {type: hangup}}',
}


def doc(top: str = "", **fields: str | None) -> str:
    """A small plan as YAML text; ``fields`` replace (or with None remove) tenant fields."""
    tenant = {**TENANT, **fields}
    body = "".join(f"    {k}: {v}\n" for k, v in tenant.items() if v is not None)
    return (
        "version: 1\ncentre: home\ncentres:\n"
        '  home: {name: "Home"}\n  partner: {name: "Partner", number: "01632 960400"}\n'
        f'  dark: {{name: "No number"}}\n{top}tenants:\n  council:\n{body}'
    )


def problems(text: str) -> list[Problem]:
    return load_plan_text(text).problems


def only(text: str, severity: str = "error") -> tuple[str, str]:
    found = [p for p in problems(text) if p.severity == severity]
    assert len(found) == 1, found
    return found[0].path, found[0].message


def test_the_example_plan_checks_clean() -> None:
    """The shipped example has no error and no warning."""
    result = load_plan(EXAMPLE)
    assert result.ok
    assert result.problems == []


def test_the_base_document_is_clean() -> None:
    """The fixture itself is valid, so each case below shows one problem."""
    assert problems(doc()) == []


# --- shape: YAML 1.1 types -------------------------------------------------------------------

MENU = (
    "\n      main:\n        prompt: council/menu\n        options:\n{options}"
    "        on_invalid: {{type: hangup}}\n        on_timeout: {{type: hangup}}"
)


def test_unquoted_time_is_quote_this_value() -> None:
    """``18:00`` unquoted arrives as 1080: the message says so and shows the fix."""
    path, message = only(doc(hours="\n      mon: [08:30-12:00, 18:00]"))
    assert path == "tenants.council.hours.mon[1]"
    assert message == 'YAML read 18:00 as a number: quote this value: "18:00"'


def test_unquoted_number_with_plus_is_quote_this_value() -> None:
    """``+441632960001`` unquoted loses its ``+`` and becomes an int."""
    path, message = only(doc(numbers="[+441632960001]"))
    assert path == "tenants.council.numbers[0]"
    assert message == 'YAML read +441632960001 as a number: quote this value: "+441632960001"'


def test_unquoted_number_with_leading_zero_is_octal() -> None:
    """``0123`` unquoted is read as octal 83."""
    path, message = only(doc(numbers="[0123]"))
    assert (path, message) == (
        "tenants.council.numbers[0]",
        'YAML read 0123 as a number: quote this value: "0123"',
    )


def test_unquoted_dtmf_key_is_quote_this_key() -> None:
    """An option key ``1`` unquoted is an int key."""
    menus = MENU.format(options="          1: {type: queue, queue: main}\n")
    path, message = only(doc(entry="{type: menu, menu: main}", menus=menus))
    assert path == 'tenants.council.menus.main.options."1"'
    assert message == 'YAML read 1 as a number: quote this key: "1"'


def test_no_is_false_in_yaml_1_1() -> None:
    """A prompt named ``no`` arrives as False."""
    path, message = only(doc(prompts="no"))
    assert (path, message) == (
        "tenants.council.prompts",
        'YAML read no as true/false: quote this value: "no"',
    )


# --- shape: fields, types, formats -----------------------------------------------------------


def test_unknown_field() -> None:
    """A misspelt field is refused, not ignored."""
    assert only(doc(openning_hours="{}")) == (
        "tenants.council.openning_hours",
        "unknown field 'openning_hours'",
    )


def test_missing_field() -> None:
    """A required field that is absent is named."""
    assert only(doc(entry=None)) == ("tenants.council.entry", "missing required field 'entry'")


def test_unknown_destination_type() -> None:
    """The tagged union lists the known types."""
    path, message = only(doc(entry="{type: queueue, queue: main}"))
    assert path == "tenants.council.entry"
    assert message.startswith("unknown destination type 'queueue' (known: queue, menu, announcement")


def test_destination_without_type() -> None:
    """A destination needs its tag."""
    assert only(doc(entry="{queue: main}"))[1].startswith("a destination needs a 'type'")


def test_bad_phone_number() -> None:
    """A string that is not a number says what is expected."""
    path, message = only(doc(numbers='["call us"]'))
    assert path == "tenants.council.numbers[0]"
    assert "'call us' is not a phone number" in message


def test_bad_time_range() -> None:
    """A malformed range points at the range."""
    path, message = only(doc(hours='\n      weekdays: ["8.30-17.30"]'))
    assert path == "tenants.council.hours.weekdays[0]"
    assert "'8.30-17.30' is not a time range" in message


def test_bad_dtmf_key() -> None:
    """Option keys are single DTMF characters."""
    menus = MENU.format(options='          "12": {type: queue, queue: main}\n')
    path, message = only(doc(entry="{type: menu, menu: main}", menus=menus))
    assert path == 'tenants.council.menus.main.options."12"'
    assert "is not a valid DTMF key" in message


def test_unknown_time_zone() -> None:
    """The zone must exist."""
    assert only(doc(timezone='"Europe/Lndon"')) == (
        "tenants.council",
        "unknown time zone 'Europe/Lndon' (e.g. Europe/London)",
    )


def test_closure_needs_a_date_or_a_span() -> None:
    """A closure gives a date, or from and until."""
    path, message = only(doc(closures='[{reason: "x"}]'))
    assert (path, message) == ("tenants.council.closures[0]", "give either 'date', or 'from' and 'until'")


def test_closure_until_before_from() -> None:
    """A span must run forwards."""
    closures = '[{from: "2026-12-24 17:00", until: "2026-12-24 12:00", reason: "x"}]'
    assert only(doc(closures=closures)) == ("tenants.council.closures[0]", "'until' must be after 'from'")


def test_out_of_range_number() -> None:
    """Ranges on numbers use pydantic's wording at the exact path."""
    queues = '\n      main: {asterisk_queue: "council-main", timeout_s: 1, failover: {type: hangup}}'
    path, message = only(doc(queues=queues))
    assert path == "tenants.council.queues.main.timeout_s"
    assert "greater than or equal to 5" in message


def test_payment_reference_cannot_be_card_length() -> None:
    """A reference longer than 12 digits could be a card number: refused."""
    lines = (
        '\n      tax: {number: "01632 960777", label: "Pay", '
        'reference: {prompt: p, pattern: "^[0-9]{16}$", max_digits: 16}}'
    )
    path, message = only(doc(payment_lines=lines))
    assert path == "tenants.council.payment_lines.tax.reference.max_digits"
    assert "less than or equal to 12" in message


def test_invalid_yaml_reports_the_line() -> None:
    """Broken YAML is a problem with its line, not a traceback."""
    found = problems("version: 1\ntenants: [unclosed\n")
    assert len(found) == 1
    assert found[0].message.startswith("not valid YAML")
    assert found[0].source is not None
    assert found[0].source.startswith("plan.yaml:")


def test_duplicate_yaml_key_is_reported() -> None:
    """YAML keeps the last of two equal keys silently; we do not."""
    menus = MENU.format(options='          "1": {type: queue, queue: main}\n          "1": {type: hangup}\n')
    found = problems(doc(entry="{type: menu, menu: main}", menus=menus))
    assert [(p.path, p.message) for p in found] == [
        ('tenants.council.menus.main.options."1"', "duplicate key: the later value would silently win")
    ]


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    """Several problems come back together, each with file and line."""
    found = problems(doc(numbers="[+441632960001]", prompts="no", colour='"red"'))
    assert {p.path for p in found} == {
        "tenants.council.numbers[0]",
        "tenants.council.prompts",
        "tenants.council.colour",
    }
    assert all(p.source and p.source.startswith("plan.yaml:") for p in found)


# --- relations -------------------------------------------------------------------------------


def test_unknown_queue_lists_the_known_ones() -> None:
    """The issue's own example message."""
    menus = MENU.format(
        options='          "7": {type: queue, queue: billing}\n          "1": {type: queue, queue: main}\n'
    )
    path, message = only(doc(entry="{type: menu, menu: main}", menus=menus))
    assert path == 'tenants.council.menus.main.options."7"'
    assert message == "unknown queue 'billing' (known: main)"


def test_unknown_menu() -> None:
    """A menu reference must exist."""
    assert only(doc(entry="{type: menu, menu: main}")) == (
        "tenants.council.entry",
        "unknown menu 'main' (none defined)",
    )


def test_unknown_payment_line() -> None:
    """A payment destination names a line of the tenant."""
    assert only(doc(entry="{type: payment, line: tax}")) == (
        "tenants.council.entry",
        "unknown payment line 'tax' (none defined)",
    )


def test_unknown_centre() -> None:
    """An external destination's centre must exist."""
    path, message = only(doc(out_of_hours="{type: external, centre: nowhere}"))
    assert (path, message) == (
        "tenants.council.out_of_hours",
        "unknown centre 'nowhere' (known: dark, home, partner)",
    )


def test_centre_without_a_number() -> None:
    """A partner centre must be diallable."""
    assert only(doc(out_of_hours="{type: external, centre: dark}")) == (
        "tenants.council.out_of_hours",
        "centre 'dark' has no number to dial",
    )


def test_external_to_this_centre_itself() -> None:
    """Dialling our own centre is a loop."""
    path, message = only(doc(out_of_hours="{type: external, centre: home}"))
    assert path == "tenants.council.out_of_hours"
    assert message.startswith("centre 'home' is this centre itself")


def test_unknown_self_centre() -> None:
    """The plan's own centre must be listed."""
    text = doc().replace("centre: home\n", "centre: elsewhere\n", 1)
    assert only(text) == ("centre", "unknown centre 'elsewhere' (known: dark, home, partner)")


def test_menu_cycle_with_no_exit() -> None:
    """Two menus that only lead to each other trap the caller."""
    menus = (
        '\n      a: {prompt: p, options: {"1": {type: menu, menu: b}}, on_invalid: {type: menu, menu: b},'
        " on_timeout: {type: menu, menu: b}}"
        '\n      b: {prompt: p, options: {"1": {type: menu, menu: a}}, on_invalid: {type: menu, menu: a},'
        " on_timeout: {type: menu, menu: a}}"
    )
    found = [p for p in problems(doc(entry="{type: menu, menu: a}", menus=menus)) if p.severity == "error"]
    assert [(p.path, p.message) for p in found] == [
        (
            "tenants.council.menus.a",
            "menu cycle with no exit: a -> b never reaches a queue, service or hangup",
        ),
        (
            "tenants.council.menus.b",
            "menu cycle with no exit: a -> b never reaches a queue, service or hangup",
        ),
    ]


def test_unreachable_menu() -> None:
    """A menu nothing leads to is reported."""
    menus = MENU.format(options='          "1": {type: queue, queue: main}\n')
    assert only(doc(menus=menus)) == (
        "tenants.council.menus.main",
        "unreachable menu: no destination leads to it",
    )


def test_tenant_with_no_out_of_hours_path() -> None:
    """Every tenant needs somewhere for after-hours callers."""
    path, message = only(doc(out_of_hours=None))
    assert path == "tenants.council.out_of_hours"
    assert message.startswith("tenant has no out-of-hours path")


def test_out_of_hours_to_a_queue() -> None:
    """A queue after hours is staffed by nobody."""
    path, message = only(
        doc(out_of_hours="{type: announcement, prompt: p, then: {type: queue, queue: main}}")
    )
    assert (path, message) == (
        "tenants.council.out_of_hours",
        "out-of-hours goes to queue 'main', which nobody staffs after hours",
    )


def test_queue_with_no_overflow_or_failover_is_a_warning() -> None:
    """Not fatal, but shown."""
    text = doc(queues='\n      main: {asterisk_queue: "council-main"}')
    assert only(text, "warning") == (
        "tenants.council.queues.main",
        "queue has no overflow or failover: callers wait until they give up",
    )
    assert load_plan_text(text).ok


def test_missing_emergency_cover_is_a_warning() -> None:
    """Without cover, an emergency toggle falls back to out-of-hours."""
    assert only(doc(emergency_cover=None), "warning")[0] == "tenants.council.emergency_cover"


OVERFLOW = (
    '\n      main:\n        asterisk_queue: "council-main"\n        failover: {{type: hangup}}'
    "\n        overflow: {{enter: {enter}, leave: {leave}, to: {{type: external, centre: partner}}}}"
)


def test_leave_threshold_above_enter() -> None:
    """Hysteresis must leave at or below where it enters."""
    queues = OVERFLOW.format(enter="{waiting: 5}", leave="{waiting: 8}")
    assert only(doc(queues=queues)) == (
        "tenants.council.queues.main.overflow.leave.waiting",
        "leave threshold 8 is above the enter threshold 5",
    )


def test_leave_threshold_without_enter() -> None:
    """A leave threshold needs a matching enter threshold."""
    queues = OVERFLOW.format(enter="{waiting: 5}", leave="{longest_wait_s: 60}")
    assert only(doc(queues=queues)) == (
        "tenants.council.queues.main.overflow.leave.longest_wait_s",
        "'longest_wait_s' has a leave threshold but no enter one",
    )


def test_overflow_without_leave_is_a_warning() -> None:
    """No hysteresis may flap."""
    queues = OVERFLOW.format(enter="{waiting: 5}", leave="null")
    assert only(doc(queues=queues), "warning")[0] == "tenants.council.queues.main.overflow"


def test_repeat_key_that_is_also_an_option() -> None:
    """A key cannot both repeat the menu and choose an option."""
    menus = MENU.format(options='          "*": {type: queue, queue: main}\n') + '\n        repeat_key: "*"'
    assert only(doc(entry="{type: menu, menu: main}", menus=menus)) == (
        "tenants.council.menus.main.repeat_key",
        "key '*' is also an option of this menu",
    )


def test_number_owned_by_two_tenants() -> None:
    """One number, one tenant."""
    second = doc().replace("tenants:\n  council:\n", "tenants:\n  council:\n", 1) + "".join(
        f"    {k}: {v}\n" for k, v in TENANT.items()
    ).replace("    name:", "  other:\n    name:", 1)
    assert only(second) == ("tenants.other.numbers[0]", "number 01632 960001 is already tenant council's")


def test_special_opening_on_a_bank_holiday_is_a_warning() -> None:
    """It would never apply unless it overrides the holiday."""
    openings = '[{date: "2026-12-28", hours: ["10:00-12:00"], reason: "bins"}]'
    path, message = only(doc(special_openings=openings), "warning")
    assert path == "tenants.council.special_openings[0]"
    assert message.startswith("2026-12-28 is a bank holiday (Boxing Day")


def test_duplicate_announcement_id() -> None:
    """Announcement ids are unique per tenant."""
    item = '{id: bins, prompt: p, start: "2026-11-01 00:00", end: "2026-11-30 00:00"}'
    assert only(doc(announcements=f"[{item}, {item}]")) == (
        "tenants.council.announcements[1].id",
        "duplicate id 'bins'",
    )


def test_folder_plan_merges_files_and_reports_conflicts(tmp_path: Path) -> None:
    """A folder of per-council files is one plan; a tenant defined twice is a problem."""
    text = doc()
    head, _, tenants = text.partition("tenants:\n")
    (tmp_path / "00-centre.yaml").write_text(head)
    (tmp_path / "council.yaml").write_text("tenants:\n" + tenants)
    assert load_plan(tmp_path).ok
    (tmp_path / "copy.yaml").write_text("tenants:\n" + tenants)
    found = load_plan(tmp_path).problems
    assert [(p.path, p.message, p.source) for p in found] == [
        ("tenants.council", "defined in more than one file", "council.yaml")
    ]


def test_avoidable_contact_reasons_are_names_listed_once() -> None:
    """The reasons an adviser may give for an avoidable contact: plain names, each once."""
    assert problems(doc(avoidable_contact_reasons='["chasing-progress", "wrong-number"]')) == []
    assert only(doc(avoidable_contact_reasons='["chasing-progress", "chasing-progress"]')) == (
        "tenants.council",
        "avoidable contact reason 'chasing-progress' is listed twice",
    )
    path, message = only(doc(avoidable_contact_reasons='["Chasing progress"]'))
    assert path == "tenants.council.avoidable_contact_reasons[0]"
    assert "is not a valid name" in message


def test_records_policy_archives_before_it_purges() -> None:
    """A tenant's archive and retention of contact records: archived before purged, queues known."""
    good = "{retention_days: 730, archive_after_days: 90, service_level_s: 30, "
    good += "queue_service_level_s: {main: 15}}"
    assert problems(doc(records=good)) == []
    path, message = only(doc(records="{retention_days: 90, archive_after_days: 90}"))
    assert path == "tenants.council.records"
    assert message == "archive_after_days 90 must be below retention_days 90"
    path, message = only(doc(records="{queue_service_level_s: {billing: 15}}"))
    assert path == "tenants.council"
    assert message == "records.queue_service_level_s: unknown queue 'billing' (known: main)"
    path, message = only(doc(records="{retention_days: 0}"))
    assert path == "tenants.council.records.retention_days"


# --- every problem at once: relations despite shape problems, with lines ----------------------


def located(text: str) -> list[tuple[str | None, str, str]]:
    return [(p.source, p.path, p.message) for p in problems(text) if p.severity == "error"]


def example(*edits: tuple[str, str]) -> str:
    text = EXAMPLE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def at(text: str, needle: str) -> str:
    """``plan.yaml:N``: the line of ``text`` holding ``needle`` (the example plan grows)."""
    [number] = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return f"plan.yaml:{number}"


ORPHAN = (
    "      orphan: {prompt: p, options: {}, on_invalid: {type: menu, menu: orphan}, "
    "on_timeout: {type: menu, menu: orphan}}\n"
)


def test_relation_problems_carry_the_line_of_the_value_at_fault() -> None:
    text = example(
        ('"2": {type: queue, queue: waste}', '"2": {type: queue, queue: bins}'),
        ("emergency_cover: {type: queue, queue: general}", "emergency_cover: {type: queue, queue: nobody}"),
        ("    queues:\n      general:", ORPHAN + "    queues:\n      general:"),
    )
    assert located(text) == [
        (at(text, "queue: bins}"), 'tenants.harborough.menus.main.options."2"',
         "unknown queue 'bins' (known: charnwood_assist, emergency, revenues, waste)"),
        (at(text, "orphan: {prompt"), "tenants.charnwood.menus.orphan",
         "menu cycle with no exit: orphan never reaches a queue, service or hangup"),
        (at(text, "orphan: {prompt"), "tenants.charnwood.menus.orphan",
         "unreachable menu: no destination leads to it"),
        (at(text, "queue: nobody}"), "tenants.charnwood.emergency_cover",
         "unknown queue 'nobody' (known: general)"),
    ]  # fmt: skip


def test_relations_are_checked_even_with_shape_problems() -> None:
    """An unquoted time and an unquoted number do not hide an unknown queue: all three, with lines."""
    text = example(
        ('weekdays: ["08:30-17:30"]', "weekdays: [18:00]"),
        ('numbers: ["01632 960100"]', "numbers: [+441632960100]"),
        ('"2": {type: queue, queue: waste}', '"2": {type: queue, queue: bins}'),
    )
    assert located(text) == [
        (at(text, "weekdays: [18:00]"), "tenants.harborough.hours.weekdays[0]",
         'YAML read 18:00 as a number: quote this value: "18:00"'),
        (at(text, "numbers: [+441632960100]"), "tenants.charnwood.numbers[0]",
         'YAML read +441632960100 as a number: quote this value: "+441632960100"'),
        (at(text, "queue: bins}"), 'tenants.harborough.menus.main.options."2"',
         "unknown queue 'bins' (known: charnwood_assist, emergency, revenues, waste)"),
    ]  # fmt: skip


def test_a_part_set_aside_causes_no_false_alarm() -> None:
    """A malformed menu is left out of the relation checks: the options leading to it are not
    "unknown menu", and no menu is called unreachable for lack of it; a malformed out-of-hours
    is not "no out-of-hours path". A real unknown reference elsewhere is still found."""
    more, ooh = '        prompt: "harborough/more-services"', '      label: "Charnwood out-of-hours service"'
    text = example(
        (more, more + "\n        colour: red"),
        (ooh, ooh + "\n      extra: 1"),
        ("on_timeout: {type: queue, queue: general}", "on_timeout: {type: queue, queue: genral}"),
    )
    assert located(text) == [
        (at(text, "colour: red"), "tenants.harborough.menus.more.colour", "unknown field 'colour'"),
        (at(text, "extra: 1"), "tenants.charnwood.out_of_hours.extra", "unknown field 'extra'"),
        (at(text, "queue: genral}"), "tenants.charnwood.menus.main.on_timeout",
         "unknown queue 'genral' (known: general)"),
    ]  # fmt: skip


def test_list_items_set_aside_keep_the_others_paths() -> None:
    """With a malformed announcement dropped, the one after it is still called announcements[2]."""
    item = '{id: bins, prompt: p, start: "2026-11-01 00:00", end: "2026-11-30 00:00"}'
    text = doc(announcements=f"\n      - {{id: bad}}\n      - {item}\n      - {item}")
    assert located(text) == [
        ("plan.yaml:18", "tenants.council.announcements[0].prompt", "missing required field 'prompt'"),
        ("plan.yaml:18", "tenants.council.announcements[0].start", "missing required field 'start'"),
        ("plan.yaml:18", "tenants.council.announcements[0].end", "missing required field 'end'"),
        ("plan.yaml:20", "tenants.council.announcements[2].id", "duplicate id 'bins'"),
    ]


def test_a_malformed_only_number_does_not_hide_the_tenant() -> None:
    """A tenant's one number, unquoted, gets a stand-in: the tenant's relations are still checked."""
    found = located(doc(numbers="[+441632960001]", entry="{type: queue, queue: nowhere}"))
    assert found == [
        ("plan.yaml:10", "tenants.council.numbers[0]",
         'YAML read +441632960001 as a number: quote this value: "+441632960001"'),
        ("plan.yaml:12", "tenants.council.entry", "unknown queue 'nowhere' (known: main)"),
    ]  # fmt: skip
