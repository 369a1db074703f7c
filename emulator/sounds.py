"""Where Asterisk finds a recording for a channel's language, and which recordings SAY plays.

Faithful to Asterisk 22.10.1 as captured (``agi_language_say.txt``) and to the code that
decides it (main/file.c ``fileexists_core``, main/say.c):

* A prompt ``name`` is looked up, in this order, as ``<language>/name`` (then the language with
  each ``_dialect`` suffix cut off: ``en_GB`` -> ``en``), ``name`` (no language directory), and
  last ``en/name`` unless English was already tried. So on a ``cy`` channel a prompt only under
  ``en/`` plays from ``en/``; on an ``en`` channel a prompt only under ``cy/`` is not found
  (``200 result=-1 endpos=0``, WARNING ``File cr-croeso does not exist in any format``).
* ``SAY NUMBER`` builds its list of files by the language's rules; for a language say.c does not
  know (``cy``) it logs ``Language cy not currently supported, defaulting to English`` and uses
  the English rules (``21`` -> ``digits/20``, ``digits/1``). ``SAY DIGITS`` is one file per
  character (``digits/1``...), with no warning. Each file is then looked up as any prompt,
  with the channel's language: on a ``cy`` channel with no ``cy/digits/`` the ``en`` ones play.
  Not emulated: the rules of the languages say.c does know other than ``en`` (``en_GB`` adds
  "and", ``de``, ``fr``...), SAY's other forms (ALPHA, PHONETIC, DATE...).
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_LANGUAGE = "en"  # main/file.c DEFAULT_LANGUAGE
INT_MAX = 2**31 - 1

Exists = Callable[[str], bool]


def lookup_order(name: str, language: str) -> list[str]:
    """The paths (under the sounds directory) ``fileexists_core`` tries for ``name``, in order."""
    if name.startswith("/"):
        return [name]  # an absolute path: no language is tried
    order: list[str] = []
    lang = language
    while lang:
        order.append(f"{lang}/{name}")
        if "_" not in lang:
            break
        lang = lang.rpartition("_")[0]
    order.append(name)
    if DEFAULT_LANGUAGE not in (language, lang):  # "unless it was already tried before"
        order.append(f"{DEFAULT_LANGUAGE}/{name}")
    return order


def find(name: str, language: str, exists: Exists) -> str | None:
    """The path Asterisk plays for prompt ``name`` on a channel in ``language``, or None."""
    return next((path for path in lookup_order(name, language) if exists(path)), None)


def missing_file_warning(name: str) -> str:
    return f"file.c: File {name} does not exist in any format"


def number_rules_warning(language: str) -> str | None:
    """say.c's warning for SAY NUMBER in a language whose rules it does not have."""
    if language[:2].lower() == "en":
        return None
    return f"say.c: Language {language} not currently supported, defaulting to English"


def number_files(number: int) -> list[str]:
    """``get_number_str_en``: the files SAY NUMBER plays for ``number`` by the English rules."""
    if number == 0:
        return ["digits/0"]
    files: list[str] = []
    if number < 0:
        files.append("digits/minus")
        number = -number
    if number >= 1_000_000_000:
        if number >= INT_MAX:
            return files  # "Number is too big for me": nothing more is said
        files += [*number_files(number // 1_000_000_000), "digits/billion"]
        number %= 1_000_000_000
    if number >= 1_000_000:
        files += [*number_files(number // 1_000_000), "digits/million"]
        number %= 1_000_000
    if number >= 1000:
        files += [*number_files(number // 1000), "digits/thousand"]
        number %= 1000
    if number >= 100:
        files += [f"digits/{number // 100}", "digits/hundred"]
        number %= 100
    if number >= 20:
        files.append(f"digits/{number // 10 * 10}")
        number %= 10
    if number:
        files.append(f"digits/{number}")
    return files


_SYMBOLS = {"*": "digits/star", "#": "digits/pound", "-": "letters/dash", "+": "letters/plus"}


def digit_files(text: str) -> list[str]:
    """``ast_get_digit_str``: one file per character (digits, ``*``, ``#``, ``-``, ``+``);
    other characters say nothing."""
    files: list[str] = []
    for char in text:
        if char.isdigit():
            files.append(f"digits/{char}")
        elif char in _SYMBOLS:
            files.append(_SYMBOLS[char])
    return files
