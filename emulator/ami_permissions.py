"""Which write class an AMI action needs, as Asterisk 22 checks it (pure).

Asterisk registers every manager action with an *authority*, a set of classes, and runs it for a
user only when ``(writeperm & authority) || authority == 0`` (``main/manager.c``,
``process_message``): one class of the set is enough, and an action registered with none is open
to every logged-in user. The table holds the registrations of the actions callrouter sends and a
few a controller might be tempted to (``main/manager.c`` ``ast_manager_register_xml_core`` and
``apps/app_queue.c`` ``ast_manager_register_xml`` in Asterisk 22). ``all`` in ``write =`` grants
every class.
"""

from __future__ import annotations

ACTION_WRITE_CLASSES: dict[str, frozenset[str]] = {
    # main/manager.c
    "login": frozenset(),
    "logoff": frozenset(),
    "ping": frozenset(),
    "coresettings": frozenset({"system", "reporting"}),
    "getvar": frozenset({"call", "reporting"}),
    "setvar": frozenset({"call"}),
    "redirect": frozenset({"call"}),
    "hangup": frozenset({"system", "call"}),
    "originate": frozenset({"originate"}),
    "userevent": frozenset({"user"}),
    # apps/app_queue.c
    "queuestatus": frozenset(),
    "queuesummary": frozenset(),
    "queuewithdrawcaller": frozenset(),
    "queueadd": frozenset({"agent"}),
    "queueremove": frozenset({"agent"}),
    "queuepause": frozenset({"agent"}),
}


def write_classes(value: str) -> frozenset[str]:
    """The classes of a ``write =`` line's value (``agent,originate ; comment``)."""
    return frozenset(part.strip().lower() for part in value.split(";", 1)[0].split(",") if part.strip())


def permitted(action: str, granted: frozenset[str]) -> bool:
    """Whether a user whose ``write =`` grants ``granted`` may run ``action`` (an action not in
    the table is left to the caller: Asterisk would answer that it does not know it)."""
    needed = ACTION_WRITE_CLASSES.get(action.lower())
    if not needed or "all" in granted:
        return True
    return bool(needed & granted)


CALLROUTER_USER_WRITE = frozenset({"agent", "originate", "reporting"})
"""The ``write =`` classes of the ``[callrouter]`` AMI user callrouter ships
(``dialplans/manager.conf.sample``, ``deploy/asterisk/manager.conf``; a test keeps them equal):
the emulated centres and the test rigs give the fake AMI these, so a flow that needs more is
refused there as on a real Asterisk."""
