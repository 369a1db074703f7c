"""Relation checks on what parsed of a plan with shape problems (pure).

An engineer wants every problem at once: an unquoted ``18:00`` in one tenant's hours must
not hide an unknown queue in its menus. So when the shape check fails, the parts at fault
are set aside, one small unit at a time, until what is left validates:

- an item of a list (a closure, an hour range, ...) is dropped (a number gets a stand-in);
- a menu option is dropped; any other fault in a menu, queue, payment line or centre drops
  that one entry;
- a faulty optional tenant field (out-of-hours, emergency cover, time zone, ...) is dropped;
  a required one (entry, name, prompt set) gets a neutral stand-in;
- a tenant is dropped only when nothing smaller will do.

The relation checks then run on the rest, told what was set aside (see
:class:`routing.core.validate.SetAside`), and a relation problem at, inside or around a
part set aside is not reported: it would be a consequence of leaving that part out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from routing.core import validate
from routing.core.plan import Plan
from routing.core.problems import PathPart, Problem

Key = tuple[PathPart, ...]
_ROUNDS = 20  # each round removes at least one fault; real plans need two or three
_HANGUP = {"type": "hangup"}
_STAND_IN = "set-aside"  # a valid name, prompt set and text
_NAMED = {"menus": "menu", "queues": "queue", "payment_lines": "payment_line"}
_LISTS = ("numbers", "languages", "closures", "special_openings", "announcements")
_OPTIONAL = (
    "out_of_hours",
    "emergency_cover",
    "survey",
    "language_choice",
    "timezone",
    "bank_holidays",
    "hours",
)
_HOLDS_DESTINATIONS = {
    "menus",
    "queues",
    "payment_lines",
    "closures",
    "entry",
    "out_of_hours",
    "emergency_cover",
}


@dataclass
class _Aside:
    """What was set aside so far, and how list indices moved."""

    paths: list[Key] = field(default_factory=list)
    names: set[tuple[str, str, str]] = field(default_factory=set)
    graphs: set[str] = field(default_factory=set)
    kept: dict[Key, list[int]] = field(default_factory=dict)  # list path -> original index of each item

    def original(self, parts: Key) -> Key:
        """``parts`` with list indices of the trimmed data turned back into the file's."""
        for cut in range(len(parts) - 1, 0, -1):
            kept = self.kept.get(parts[:cut])
            index = parts[cut]
            if kept is not None and isinstance(index, int) and index < len(kept):
                return (*parts[:cut], kept[index], *parts[cut + 1 :])
        return parts

    def covers(self, parts: Key) -> bool:
        """Whether ``parts`` is at, inside or around a part set aside."""
        return any(p[: len(parts)] == parts or parts[: len(p)] == p for p in self.paths)


Walk = Callable[[Any, Sequence[Any]], tuple[list[PathPart], bool]]


def relations_of_the_rest(data: dict[str, Any], exc: ValidationError, walk: Walk) -> list[Problem] | None:
    """Relation problems of what is left of ``data`` once the parts at fault are set aside,
    with paths of the original data; None when too little is left to check."""
    work = copy.deepcopy(data)
    aside = _Aside()
    for _ in range(_ROUNDS):
        units = {_unit(tuple(walk(work, err["loc"])[0])) for err in exc.errors()}
        for unit in sorted(units, key=_later_items_first):
            if not _set_aside(work, unit, aside):
                return None
        try:
            plan = Plan.model_validate(work)
        except ValidationError as again:
            exc = again
            continue
        told = validate.SetAside(frozenset(aside.names), frozenset(aside.graphs))
        found = []
        for problem in validate.relations(plan, told):
            parts = aside.original(problem.parts) if problem.parts is not None else None
            if parts is None or not aside.covers(parts):
                found.append(Problem.at(parts, problem.message, problem.severity) if parts else problem)
        return found
    return None


def _unit(fault: Key) -> Key:
    """The path of the part to set aside for a fault at ``fault``."""
    if not fault or fault[0] != "tenants":
        return fault[:2] if fault[:1] == ("centres",) else fault[:1]
    rest = fault[2:]
    if not rest:
        return fault[:2]
    if rest[0] in _NAMED:
        return fault[:6] if rest[0] == "menus" and len(rest) >= 4 and rest[2] == "options" else fault[:4]
    if rest[0] == "hours":
        return fault[:5]
    return fault[:4] if rest[0] in _LISTS else fault[:3]


def _later_items_first(unit: Key) -> list[tuple[int, int | str]]:
    """Parts set aside in an order that keeps the others' list indices right."""
    return [(0, -part) if isinstance(part, int) else (1, part) for part in unit]


def _set_aside(work: dict[str, Any], fault: Key, aside: _Aside) -> bool:
    """Set aside the smallest part holding ``fault``; False when that would be the whole plan."""
    if not fault or (fault[0] == "tenants" and len(fault) < 2):
        return False
    if fault[0] == "tenants":
        return _in_tenant(work, str(fault[1]), fault[2:], aside)
    top = str(fault[0])
    if top == "centres" and len(fault) >= 2 and isinstance(work.get("centres"), dict):
        work["centres"].pop(fault[1], None)
        aside.names.add(("", "centre", str(fault[1])))
    elif top == "centres":
        work["centres"] = {}
        aside.names.add(("", "centre", "*"))
    elif top == "version":
        work["version"] = 1
    elif top == "centre":
        work["centre"] = _STAND_IN
    elif top == "unknown_number":
        work["unknown_number"] = dict(_HANGUP)
    else:
        work.pop(top, None)
    aside.paths.append(fault[:2] if top == "centres" else (top,))
    return True


def _in_tenant(work: dict[str, Any], tid: str, rest: Key, aside: _Aside) -> bool:
    tenants = work["tenants"]
    tenant = tenants.get(tid)
    base: Key = ("tenants", tid)
    if not isinstance(tenant, dict) or not rest:
        if isinstance(tenant, dict) and "timezone" in tenant:  # the tenant's own check: its zone
            tenant.pop("timezone")
            aside.paths.append((*base, "timezone"))
            return True
        return _drop_tenant(tenants, tid, aside)
    name = str(rest[0])
    if name in _HOLDS_DESTINATIONS:
        aside.graphs.add(tid)
    if name in _NAMED:
        return _named(tenant, base, name, rest, aside)
    if name in _LISTS or name == "hours":
        return _list_item(tenants, tid, name, rest, aside)
    if name == "entry":
        tenant["entry"] = dict(_HANGUP)
    elif name in ("name", "prompts"):
        tenant[name] = _STAND_IN
    else:  # an optional field, or one that is not a tenant field at all
        tenant.pop(name, None)
    aside.paths.append((*base, name))
    return True


def _named(tenant: dict[str, Any], base: Key, name: str, rest: Key, aside: _Aside) -> bool:
    """A fault in a menu, queue or payment line: drop the menu option, else the entry."""
    kind = _NAMED[name]
    entries = tenant.get(name)
    tid = str(base[1])
    if len(rest) < 2 or not isinstance(entries, dict):
        tenant[name] = {}
        aside.names.add((tid, kind, "*"))
        aside.paths.append((*base, name))
        return True
    entry = str(rest[1])
    options = entries.get(entry, {}).get("options") if isinstance(entries.get(entry), dict) else None
    if name == "menus" and len(rest) >= 4 and rest[2] == "options" and isinstance(options, dict):
        options.pop(rest[3], None)
        aside.paths.append((*base, name, entry, "options", rest[3]))
        return True
    entries.pop(entry, None)
    aside.names.add((tid, kind, entry))
    aside.paths.append((*base, name, entry))
    return True


def _list_item(tenants: dict[str, Any], tid: str, name: str, rest: Key, aside: _Aside) -> bool:
    """A fault in a list of the tenant (or in a day of its hours): drop the item."""
    tenant, base = tenants[tid], ("tenants", tid)
    depth = 2 if name == "hours" else 1  # hours.mon[0]: the list is one level further down
    holder: Any = tenant
    for part in rest[:depth]:
        holder = holder.get(part) if isinstance(holder, dict) else None
    index = rest[depth] if len(rest) > depth else None
    if name == "numbers" and isinstance(holder, list) and isinstance(index, int) and index < len(holder):
        holder[index] = f"+4400{len(aside.paths):09d}"  # a stand-in nobody dials: a tenant needs a number
        aside.paths.append((*base, name, index))
        return True
    if isinstance(holder, list) and isinstance(index, int) and index < len(holder):
        list_path = (*base, *rest[:depth])
        kept = aside.kept.setdefault(list_path, list(range(len(holder))))
        aside.paths.append((*list_path, kept.pop(index)))
        del holder[index]
        return True
    if name == "numbers":
        return _drop_tenant(tenants, tid, aside)
    hours = tenant.get("hours")
    if name == "hours" and len(rest) >= 2 and isinstance(hours, dict):
        hours.pop(rest[1], None)
        aside.paths.append((*base, *rest[:2]))
    else:
        tenant.pop(name, None)
        aside.paths.append((*base, name))
    return True


def _drop_tenant(tenants: dict[str, Any], tid: str, aside: _Aside) -> bool:
    tenants.pop(tid, None)
    aside.paths.append(("tenants", tid))
    return bool(tenants)
