"""Second validation stage: relations between the parts of a shape-valid plan (pure).

Every problem is reported at once, with its path, e.g.
``tenants.harborough.menus.main.options."7": unknown queue 'billing' (known: revenues, waste)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from routing.core import numbers
from routing.core.plan import (
    AnnouncementDest,
    Destination,
    ExternalDest,
    MenuDest,
    PaymentDest,
    Plan,
    QueueDest,
    Tenant,
    Thresholds,
)
from routing.core.problems import PathPart, Problem
from routing.core.schedule import bank_holidays, expand_hours
from routing.core.times import WEEKDAYS

Path = tuple[PathPart, ...]


@dataclass(frozen=True)
class SetAside:
    """Parts of a plan left out of the relation checks because their shape was wrong.

    A reference to a set-aside queue, menu, payment line or centre is not "unknown", and a
    tenant whose menus or destinations lost a part is not judged for menu cycles and
    reachability: what is left of it would give false alarms."""

    names: frozenset[tuple[str, str, str]] = frozenset()  # (tenant or "" for centres, kind, name or "*")
    graphs: frozenset[str] = frozenset()  # tenants

    def has(self, tid: str, kind: str, name: str) -> bool:
        return (tid, kind, name) in self.names or (tid, kind, "*") in self.names


NOTHING_SET_ASIDE = SetAside()


def _known(names: object) -> str:
    listed = ", ".join(sorted(names)) if isinstance(names, dict) else ""
    return f"(known: {listed})" if listed else "(none defined)"


def _chain(path: Path, dest: Destination) -> Iterator[tuple[Path, Destination]]:
    yield path, dest
    if isinstance(dest, AnnouncementDest):
        yield from _chain((*path, "then"), dest.then)


def tenant_destinations(tenant: Tenant) -> Iterator[tuple[Path, Destination]]:
    """Every destination a tenant names outside its menus, with its path in the tenant."""
    for name in ("entry", "out_of_hours", "emergency_cover"):
        dest = getattr(tenant, name)
        if dest is not None:
            yield from _chain((name,), dest)
    for i, closure in enumerate(tenant.closures):
        if closure.destination is not None:
            yield from _chain(("closures", i, "destination"), closure.destination)
    for qname, queue in tenant.queues.items():
        if queue.failover is not None:
            yield from _chain(("queues", qname, "failover"), queue.failover)
        if queue.overflow is not None:
            yield from _chain(("queues", qname, "overflow", "to"), queue.overflow.to)
            if queue.overflow.otherwise is not None:
                yield from _chain(("queues", qname, "overflow", "otherwise"), queue.overflow.otherwise)
    for lname, line in tenant.payment_lines.items():
        if line.reference is not None and line.reference.on_failure is not None:
            path: Path = ("payment_lines", lname, "reference", "on_failure")
            yield from _chain(path, line.reference.on_failure)


def menu_destinations(tenant: Tenant, name: str) -> Iterator[tuple[Path, Destination]]:
    menu = tenant.menus[name]
    base: Path = ("menus", name)
    for key, dest in menu.options.items():
        yield from _chain((*base, "options", key), dest)
    yield from _chain((*base, "on_invalid"), menu.on_invalid)
    yield from _chain((*base, "on_timeout"), menu.on_timeout)


def all_destinations(tenant: Tenant) -> Iterator[tuple[Path, Destination]]:
    yield from tenant_destinations(tenant)
    for name in tenant.menus:
        yield from menu_destinations(tenant, name)


def _reference(plan: Plan, tid: str, tenant: Tenant, dest: Destination, aside: SetAside) -> str | None:
    """What is wrong with what ``dest`` refers to, or None."""
    if isinstance(dest, QueueDest) and dest.queue not in tenant.queues:
        return (
            None
            if aside.has(tid, "queue", dest.queue)
            else f"unknown queue '{dest.queue}' {_known(tenant.queues)}"
        )
    if isinstance(dest, MenuDest) and dest.menu not in tenant.menus:
        return (
            None
            if aside.has(tid, "menu", dest.menu)
            else f"unknown menu '{dest.menu}' {_known(tenant.menus)}"
        )
    if isinstance(dest, PaymentDest) and dest.line not in tenant.payment_lines:
        if aside.has(tid, "payment_line", dest.line):
            return None
        return f"unknown payment line '{dest.line}' {_known(tenant.payment_lines)}"
    if isinstance(dest, ExternalDest) and dest.centre is not None:
        centre = plan.centres.get(dest.centre)
        if centre is None:
            return (
                None
                if aside.has("", "centre", dest.centre)
                else f"unknown centre '{dest.centre}' {_known(plan.centres)}"
            )
        if dest.centre == plan.centre:
            return f"centre '{dest.centre}' is this centre itself: route to one of its queues instead"
        if centre.number is None:
            return f"centre '{dest.centre}' has no number to dial"
    return None


def _references(plan: Plan, tid: str, tenant: Tenant, aside: SetAside) -> Iterator[Problem]:
    for path, dest in all_destinations(tenant):
        message = _reference(plan, tid, tenant, dest, aside)
        if message is not None:
            yield Problem.at(("tenants", tid, *path), message)


# --- the menu graph ----------------------------------------------------------------------


def _menu_edges(tenant: Tenant) -> dict[str, set[str]]:
    return {
        name: {
            d.menu
            for _, d in menu_destinations(tenant, name)
            if isinstance(d, MenuDest) and d.menu in tenant.menus
        }
        for name in tenant.menus
    }


def _closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _menu_graph(tid: str, tenant: Tenant) -> Iterator[Problem]:
    edges = _menu_edges(tenant)
    exits = {
        n for n in tenant.menus if any(not isinstance(d, MenuDest) for _, d in menu_destinations(tenant, n))
    }
    for name in sorted(tenant.menus):
        if not _closure({name}, edges) & exits:
            loop = " -> ".join(sorted(_closure({name}, edges)))
            yield Problem.at(
                ("tenants", tid, "menus", name),
                f"menu cycle with no exit: {loop} never reaches a queue, service or hangup",
            )
    roots = {d.menu for _, d in tenant_destinations(tenant) if isinstance(d, MenuDest)}
    for name in sorted(set(tenant.menus) - _closure(roots, edges)):
        yield Problem.at(("tenants", tid, "menus", name), "unreachable menu: no destination leads to it")


def _menu_keys(tid: str, tenant: Tenant) -> Iterator[Problem]:
    for name, menu in tenant.menus.items():
        base = ("tenants", tid, "menus", name)
        for field in ("repeat_key", "parent_key"):
            key = getattr(menu, field)
            if key is not None and key in menu.options:
                yield Problem.at((*base, field), f"key '{key}' is also an option of this menu")
        if menu.repeat_key is not None and menu.repeat_key == menu.parent_key:
            yield Problem.at((*base, "parent_key"), "the repeat and parent keys are the same")


# --- tenants, queues, numbers --------------------------------------------------------------


def _out_of_hours(tid: str, tenant: Tenant) -> Iterator[Problem]:
    path = ("tenants", tid, "out_of_hours")
    if tenant.out_of_hours is None:
        yield Problem.at(path, "tenant has no out-of-hours path: callers after hours would reach nobody")
        return
    final = tenant.out_of_hours
    while isinstance(final, AnnouncementDest):
        final = final.then
    if isinstance(final, QueueDest):
        yield Problem.at(path, f"out-of-hours goes to queue '{final.queue}', which nobody staffs after hours")
    if tenant.emergency_cover is None:
        yield Problem.at(
            ("tenants", tid, "emergency_cover"),
            "no emergency cover: an emergency toggle would send callers to out-of-hours",
            "warning",
        )


_METRICS = ("waiting", "longest_wait_s", "callers_per_available")


def _hysteresis(path: Path, enter: Thresholds, leave: Thresholds) -> Iterator[Problem]:
    for metric in _METRICS:
        low, high = getattr(leave, metric), getattr(enter, metric)
        if low is None:
            continue
        if high is None:
            yield Problem.at((*path, "leave", metric), f"'{metric}' has a leave threshold but no enter one")
        elif low > high:
            yield Problem.at(
                (*path, "leave", metric),
                f"leave threshold {low} is above the enter threshold {high}",
            )


def _queues(tid: str, tenant: Tenant) -> Iterator[Problem]:
    for name, queue in tenant.queues.items():
        path: Path = ("tenants", tid, "queues", name)
        if queue.overflow is None and queue.failover is None:
            yield Problem.at(
                path,
                "queue has no overflow or failover: callers wait until they give up",
                "warning",
            )
        if queue.overflow is None:
            continue
        if queue.overflow.to == QueueDest(type="queue", queue=name):
            yield Problem.at((*path, "overflow", "to"), "queue overflows to itself")
        if queue.overflow.leave is None:
            yield Problem.at(
                (*path, "overflow"),
                "no leave thresholds: overflow stops as soon as the enter ones are not met (may flap)",
                "warning",
            )
        else:
            yield from _hysteresis((*path, "overflow"), queue.overflow.enter, queue.overflow.leave)


def _waits(tid: str, tenant: Tenant) -> Iterator[Problem]:
    """The callback and wait announcements of each queue: settings that cannot do what they say."""
    for name, queue in tenant.queues.items():
        path: Path = ("tenants", tid, "queues", name)
        callback, words = queue.callback, queue.announce_wait
        if callback is not None:
            if callback.prompt is None and callback.offer_key != "1":
                yield Problem.at(
                    (*path, "callback", "offer_key"),
                    f"no prompt: the prompt set's callback-offer says 'press 1', not '{callback.offer_key}'",
                    "warning",
                )
            if callback.offer_above_s >= queue.timeout_s:
                yield Problem.at(
                    (*path, "callback", "offer_above_s"),
                    f"offered only above {callback.offer_above_s} s of expected wait, but callers leave "
                    f"the queue after timeout_s {queue.timeout_s} s",
                    "warning",
                )
            if callback.offer_every_s is not None and callback.offer_every_s >= queue.timeout_s:
                yield Problem.at(
                    (*path, "callback", "offer_every_s"),
                    "never offered again: the queue's timeout_s comes first",
                    "warning",
                )
            if "premium" in callback.allow_numbers:
                yield Problem.at(
                    (*path, "callback", "allow_numbers"),
                    "premium-rate numbers are called back at the council's cost",
                    "warning",
                )
        if words is not None and not words.position and not words.expected_wait:
            message = "announces nothing: position and expected_wait are off"
            yield Problem.at((*path, "announce_wait"), message, "warning")


def _numbers(plan: Plan) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for tid, tenant in plan.tenants.items():
        for i, number in enumerate(tenant.numbers):
            other = owner.setdefault(number, tid)
            if other != tid or tenant.numbers.index(number) != i:
                yield Problem.at(
                    ("tenants", tid, "numbers", i),
                    f"number {numbers.display(number)} is already tenant {other}'s",
                )


def _calendar(tid: str, tenant: Tenant) -> Iterator[Problem]:
    for i, special in enumerate(tenant.special_openings):
        holiday = bank_holidays(tenant.bank_holidays, special.date.year).get(special.date)
        if holiday is not None and not special.overrides_holiday:
            yield Problem.at(
                ("tenants", tid, "special_openings", i),
                f"{special.date} is a bank holiday ({holiday}) which wins: set overrides_holiday: true "
                "to open",
                "warning",
            )
    for day, ranges in zip(WEEKDAYS, expand_hours(tenant.hours), strict=True):
        for first, second in itertools.pairwise(ranges):
            if second.start < first.end:
                yield Problem.at(("tenants", tid, "hours"), f"{day}: {first} and {second} overlap", "warning")
    ids = [a.id for a in tenant.announcements]
    for i, item in enumerate(tenant.announcements):
        if ids.index(item.id) != i:
            yield Problem.at(("tenants", tid, "announcements", i, "id"), f"duplicate id '{item.id}'")
        if item.end - item.start > timedelta(days=366):
            yield Problem.at(("tenants", tid, "announcements", i), "runs for over a year", "warning")


def _languages(tid: str, tenant: Tenant) -> Iterator[Problem]:
    base: Path = ("tenants", tid)
    for i, language in enumerate(tenant.languages):
        if tenant.languages.index(language) != i:
            yield Problem.at((*base, "languages", i), f"language '{language}' is listed twice")
    choice = tenant.language_choice
    languages = list(dict.fromkeys(tenant.languages))
    if len(languages) < 2:
        if choice is not None:
            yield Problem.at(
                (*base, "language_choice"), "ignored: the tenant has one language, so no choice is offered",
                "warning",
            )  # fmt: skip
        return
    if choice is None or not choice.keys:
        if len(languages) > 9:
            yield Problem.at(
                (*base, "language_choice", "keys"), "more than 9 languages: give the keys for them"
            )
    else:
        for key, language in choice.keys.items():
            if language not in languages:
                yield Problem.at(
                    (*base, "language_choice", "keys", key),
                    f"'{language}' is not one of the tenant's languages ({', '.join(languages)})",
                )
        for language in languages:
            if language not in choice.keys.values():
                yield Problem.at(
                    (*base, "language_choice", "keys"),
                    f"no key for '{language}': callers could not choose it",
                )
    if choice is not None and choice.on_timeout is not None and choice.on_timeout not in languages:
        yield Problem.at(
            (*base, "language_choice", "on_timeout"),
            f"'{choice.on_timeout}' is not one of the tenant's languages ({', '.join(languages)})",
        )


def relations(plan: Plan, aside: SetAside = NOTHING_SET_ASIDE) -> list[Problem]:
    """Every relation problem of ``plan`` (errors and warnings), in plan order.

    ``aside``: what was left out of ``plan`` because its shape was wrong (see :class:`SetAside`)."""
    problems: list[Problem] = []
    if plan.centre not in plan.centres and not aside.has("", "centre", plan.centre):
        problems.append(Problem.at(("centre",), f"unknown centre '{plan.centre}' {_known(plan.centres)}"))
    problems += _numbers(plan)
    for tid, tenant in plan.tenants.items():
        problems += _out_of_hours(tid, tenant)
        if tid not in aside.graphs:
            problems += _menu_graph(tid, tenant)
        for check in (_menu_keys, _queues, _waits, _calendar, _languages):
            problems += check(tid, tenant)
        problems += _references(plan, tid, tenant, aside)
    return problems
