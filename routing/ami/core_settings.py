"""What Asterisk's ``CoreSettings`` reply says about its record ids (pure).

A call's contact record is filed under its Linkedid, and Asterisk makes every id
``<systemname>-<seconds>.<seq>`` when ``asterisk.conf`` sets ``systemname``. Asterisk takes any
name (``east 1``, with a space, silently: ``tests/fixtures/asterisk/agi_ami_systemname.txt``,
section 6); a name :func:`routing.core.linkedid.is_system_name` refuses makes ids no call's
record can be filed under. The AMI consumer asks once per connection (``Action:
CoreSettings``: ``SystemName`` is empty when unset), so an engineer reads it at start, not
after calls have gone without records.

``CoreSettings`` needs the ``system`` or ``reporting`` class in the AMI user's ``write``
(manager.c checks an action's classes against ``writeperm``); without it Asterisk answers
``Response: Error`` / ``Message: Permission denied``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from routing.core.linkedid import FIX, SYSTEM_NAME_MAX, is_system_name
from routing.masking import shown_escaped

ACTION = "CoreSettings"
SHOWN_MAX = SYSTEM_NAME_MAX
"""At most this many characters of a name or message from Asterisk go into a log line."""
NEEDS = "the AMI user needs 'reporting' (or 'system') in manager.conf write ="


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The parts of the reply callrouter uses."""

    system_name: str
    """asterisk.conf ``systemname``; "" when unset."""
    version: str
    """``AsteriskVersion``, e.g. ``22.10.1``."""

    @property
    def name_fits(self) -> bool:
        """Whether the ids this Asterisk makes can be record ids (no name: plain ids, they can)."""
        return not self.system_name or is_system_name(self.system_name)


class CoreSettingsRefused(Exception):
    """Asterisk answered the action with an error (e.g. ``Permission denied``), or a reply
    without ``SystemName``."""


def read_reply(reply: Mapping[str, str]) -> CoreSettings:
    """The settings in a ``CoreSettings`` reply; :class:`CoreSettingsRefused` when it is not
    a success that carries ``SystemName``."""
    if reply.get("Response") != "Success":
        raise CoreSettingsRefused(reply.get("Message", "") or reply.get("Response", "") or "no Response")
    if "SystemName" not in reply:
        raise CoreSettingsRefused("the reply has no SystemName")
    return CoreSettings(reply["SystemName"], reply.get("AsteriskVersion", ""))


def shown(text: str) -> str:
    """Text from Asterisk as a log line may show it: cut to :data:`SHOWN_MAX` characters,
    escaped (a quoted Python literal: no control character, no line break), and any run of 7
    or more digits masked as caller numbers are."""
    return shown_escaped(text, SHOWN_MAX)


LogLine = tuple[int, str]
"""A log level and the line's text."""


def report(found: CoreSettings | Exception) -> tuple[LogLine, ...]:
    """What to log about a ``CoreSettings`` answer, or about the failure to get one
    (:class:`CoreSettingsRefused`, TimeoutError, anything else)."""
    if isinstance(found, CoreSettings):
        said = f"ami.core_settings asterisk={shown(found.version)} system_name={shown(found.system_name)}"
        lines: tuple[LogLine, ...] = ((logging.INFO, said),)
        if not found.name_fits:
            unfit = (
                f"ami.system_name_unfit system_name={shown(found.system_name)}: calls are routed but "
                f"get no contact record (their ids cannot be record ids); {FIX}"
            )
            lines += ((logging.ERROR, unfit),)
        return lines
    if isinstance(found, CoreSettingsRefused | TimeoutError):
        why = shown(str(found) or type(found).__name__)
        hint = f"; {NEEDS}" if isinstance(found, CoreSettingsRefused) else ""
    else:  # not expected: said by type only (its text could be anything)
        why, hint = type(found).__name__, ""
    return (
        (
            logging.WARNING,
            f"ami.core_settings_unavailable error={why}: Asterisk's system name is unchecked (a name "
            f"whose ids cannot be record ids shows only as records.id_not_linkedid){hint}",
        ),
    )
