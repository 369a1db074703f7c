"""The language choice as AGI commands, without I/O: one driver for the controller and the
fail-static script (as :mod:`ivr.menu_driver` is for menus).

For each try, the choice prompt is played once per language, in the order spoken, each part
after ``SET VARIABLE CHANNEL(language) <language>`` so that Asterisk plays that language's
recording of it. Any key interrupts (``STREAM FILE prompt "0123456789*#"``); with no key
during the prompt, ``WAIT FOR DIGIT`` waits ``timeout_s``. A key offered chooses; a silence or
another key asks again, up to ``tries`` times; then the default language is taken. The channel
is always left in the language taken (the last ``SET VARIABLE``), so every later prompt of the
call, in this route and the next ones, is in it.
"""

from __future__ import annotations

from collections.abc import Generator

from ivr.menu_driver import ALL_KEYS, Command, Key, SetLanguage, StreamFile, WaitForDigit
from routing.core.language import ChoiceSpec, LanguageOutcome

LanguageScript = Generator[Command, Key, LanguageOutcome]


def language_script(spec: ChoiceSpec) -> LanguageScript:
    """Offer the choice; return the language taken and how."""
    invalid = False
    for _ in range(spec.tries):
        key: Key = None
        for language in spec.languages:
            yield SetLanguage(language)
            key = yield StreamFile(spec.prompt, ALL_KEYS)
            if key is not None:
                break
        if key is None:
            key = yield WaitForDigit(spec.timeout_s)
        chosen = spec.language_for(key)
        if chosen is not None:
            yield SetLanguage(chosen)
            return LanguageOutcome(chosen, "chosen", key)
        invalid = invalid or key is not None
    yield SetLanguage(spec.default)
    return LanguageOutcome(spec.default, "invalid" if invalid else "timeout")
