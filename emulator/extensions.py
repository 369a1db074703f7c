"""Asterisk configuration text, read the way Asterisk 22 reads it (pure).

* :func:`parse_config`: ``[section](template options)`` and ``key = value`` / ``key => value``
  lines, ``;`` comments (``\\;`` is a literal semicolon), templates (``(!)``) and sections built
  from them, as main/config.c does.
* :class:`Dialplan`: ``extensions.conf`` contexts (``exten =>`` / ``same =>`` lines, ``n``,
  ``n(label)`` and numbered priorities, ``_`` patterns) as pbx_config loads them.
* :func:`check_queues_conf`: the warnings app_queue logs for ``queues.conf`` keywords it does
  not know (``queue_set_param`` in apps/app_queue.c, tag 22.10.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------
# Config files


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    value: str
    line: int
    arrow: bool = False  # written "key => value"


@dataclass(slots=True)
class Section:
    name: str
    line: int
    template: bool = False  # "(!)": a template, not loaded itself
    bases: tuple[str, ...] = ()
    settings: list[Setting] = field(default_factory=list)


class ConfigError(ValueError):
    """A line Asterisk's config parser would not accept."""


_SECTION = re.compile(r"^\[([^\]]+)\](?:\(([^)]*)\))?$")
_SETTING = re.compile(r"^([^=]+?)\s*(=>|=)\s*(.*)$")


def strip_comment(line: str) -> str:
    """The line without its ``;`` comment (``\\;`` stays, as a literal ``;``)."""
    out: list[str] = []
    i = 0
    while i < len(line):
        if line[i] == "\\" and line[i + 1 : i + 2] == ";":
            out.append(";")
            i += 2
            continue
        if line[i] == ";":
            break
        out.append(line[i])
        i += 1
    return "".join(out).strip()


def parse_config(text: str, name: str = "config") -> list[Section]:
    """Sections in file order; a section built from templates gets their settings first."""
    sections: list[Section] = []
    by_name: dict[str, Section] = {}
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw)
        if not line:
            continue
        header = _SECTION.match(line)
        if header:
            options = [o.strip() for o in (header.group(2) or "").split(",") if o.strip()]
            current = Section(header.group(1), number, "!" in options, tuple(o for o in options if o != "!"))
            for base in current.bases:
                if base not in by_name:
                    raise ConfigError(f"{name}:{number}: section {current.name} uses unknown template {base}")
                current.settings.extend(by_name[base].settings)
            sections.append(current)
            by_name[current.name] = current
            continue
        setting = _SETTING.match(line)
        if current is None or setting is None:
            raise ConfigError(f"{name}:{number}: cannot parse {raw!r}")
        current.settings.append(
            Setting(setting.group(1).strip(), setting.group(3), number, setting.group(2) == "=>")
        )
    return sections


# ---------------------------------------------------------------------------------------------
# queues.conf

# Every keyword queue_set_param() accepts (apps/app_queue.c, 22.10.1), plus "member".
QUEUE_KEYWORDS = frozenset(
    [
        "member",
        "musicclass",
        "music",
        "musiconhold",
        "announce",
        "context",
        "timeout",
        "ringinuse",
        "setinterfacevar",
        "setqueuevar",
        "setqueueentryvar",
        "monitor-format",
        "membergosub",
        "queue-youarenext",
        "queue-thereare",
        "queue-callswaiting",
        "queue-quantity1",
        "queue-quantity2",
        "queue-holdtime",
        "queue-minutes",
        "queue-minute",
        "queue-seconds",
        "queue-thankyou",
        "queue-callerannounce",
        "queue-reporthold",
        "announce-frequency",
        "announce-to-first-user",
        "min-announce-frequency",
        "announce-round-seconds",
        "announce-holdtime",
        "announce-position",
        "announce-position-only-up",
        "announce-position-limit",
        "periodic-announce",
        "periodic-announce-startdelay",
        "periodic-announce-frequency",
        "relative-periodic-announce",
        "random-periodic-announce",
        "retry",
        "wrapuptime",
        "penaltymemberslimit",
        "autofill",
        "autopause",
        "autopausedelay",
        "autopausebusy",
        "autopauseunavail",
        "maxlen",
        "servicelevel",
        "strategy",
        "joinempty",
        "leavewhenempty",
        "reportholdtime",
        "memberdelay",
        "weight",
        "timeoutrestart",
        "defaultrule",
        "timeoutpriority",
        "log-restricted-caller-id",
    ]
)
# [general] keys app_queue reads (load_queue_config / queue_set_global_params); others are ignored.
QUEUE_GENERAL_KEYWORDS = frozenset(
    [
        "persistentmembers",
        "autofill",
        "monitor-type",
        "shared_lastcall",
        "negative_penalty_invalid",
        "log_membername_as_agent",
        "force_longest_waiting_caller",
        "log_unpause_on_reason_change",
        "log-caller-id-name",
        "updatecdr",
    ]
)


def check_queues_conf(text: str) -> list[str]:
    """The ``WARNING`` lines Asterisk 22 logs while loading ``text`` as queues.conf: one
    ``Unknown keyword in queue '<queue>': <key> at line <n> of queues.conf`` per unknown keyword
    of each queue (a template's keyword is reported for every queue built from it)."""
    warnings: list[str] = []
    for section in parse_config(text, "queues.conf"):
        if section.template or section.name.lower() == "general":
            continue
        for setting in section.settings:
            if setting.key.lower() not in QUEUE_KEYWORDS:
                warnings.append(
                    f"Unknown keyword in queue '{section.name}': {setting.key} "
                    f"at line {setting.line} of queues.conf"
                )
    return warnings


def unknown_general_keys(text: str, known: Iterable[str] = QUEUE_GENERAL_KEYWORDS) -> list[str]:
    """Keys of ``[general]`` the module never reads (Asterisk ignores them silently)."""
    names = {k.lower() for k in known}
    return [
        s.key
        for section in parse_config(text)
        if section.name.lower() == "general"
        for s in section.settings
        if s.key.lower() not in names
    ]


# ---------------------------------------------------------------------------------------------
# extensions.conf


@dataclass(frozen=True, slots=True)
class Priority:
    number: int
    label: str | None
    app: str
    data: str
    line: int


@dataclass(slots=True)
class Extension:
    name: str  # "s", "+441632960001", "_[+0-9]."
    priorities: dict[int, Priority] = field(default_factory=dict)

    def label(self, label: str) -> int | None:
        return next((p.number for p in self.priorities.values() if p.label == label), None)


_PRIORITY = re.compile(r"^(n|\d+)(?:\(([^)]*)\))?$")


def split_app(text: str) -> tuple[str, str]:
    """``App(data)`` -> ``("App", "data")`` as pbx_config splits it (data up to the last ``)``)."""
    if "(" in text:
        app, _, data = text.partition("(")
        end = data.rfind(")")
        return app.strip(), data[:end] if end >= 0 else data
    app, _, data = text.partition(",")
    return app.strip(), data


def matches(pattern: str, exten: str) -> bool:
    """Does ``exten`` match extension ``pattern`` (``_`` patterns: X Z N [..] . !)."""
    if not pattern.startswith("_"):
        return pattern == exten
    return re.fullmatch(_pattern_regex(pattern[1:]), exten) is not None


def _pattern_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i].upper()
        if char == "X":
            out.append("[0-9]")
        elif char == "Z":
            out.append("[1-9]")
        elif char == "N":
            out.append("[2-9]")
        elif char == ".":
            out.append(".+")
        elif char == "!":
            out.append(".*")
        elif char == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\").replace("^", "\\^") + "]")
            i = end
        else:
            out.append(re.escape(pattern[i]))
        i += 1
    return "".join(out)


class Dialplan:
    """The contexts of one or more extensions.conf texts."""

    def __init__(self, contexts: dict[str, list[Extension]]) -> None:
        self.contexts = contexts

    @classmethod
    def parse(cls, *texts: str) -> Dialplan:
        contexts: dict[str, list[Extension]] = {}
        for text in texts:
            for section in parse_config(text, "extensions.conf"):
                extensions = contexts.setdefault(section.name, [])
                _add_lines(section, extensions)
        return cls(contexts)

    def find(self, context: str, exten: str) -> Extension | None:
        """The extension ``exten`` runs in ``context``: an exact name first, then the first
        pattern that matches (Asterisk orders patterns by how specific they are; callrouter's
        contexts have at most one pattern each)."""
        extensions = self.contexts.get(context, [])
        exact = next((e for e in extensions if e.name == exten), None)
        return exact or next((e for e in extensions if matches(e.name, exten)), None)

    def lines(self) -> Iterator[tuple[str, Extension, Priority]]:
        for context, extensions in self.contexts.items():
            for extension in extensions:
                for priority in extension.priorities.values():
                    yield context, extension, priority


def _add_lines(section: Section, extensions: list[Extension]) -> None:
    current: Extension | None = None
    for setting in section.settings:
        key = setting.key.lower()
        if key not in ("exten", "same"):
            continue  # e.g. [globals] settings, include => ...
        parts = setting.value.split(",", 2) if key == "exten" else ["", *setting.value.split(",", 1)]
        if len(parts) < 3:
            raise ConfigError(f"extensions.conf:{setting.line}: incomplete {setting.key} line")
        if key == "exten":
            name = parts[0].strip()
            current = next((e for e in extensions if e.name == name), None)
            if current is None:
                current = Extension(name)
                extensions.append(current)
        if current is None:
            raise ConfigError(f"extensions.conf:{setting.line}: 'same' before any 'exten'")
        priority = _PRIORITY.match(parts[1].strip())
        if priority is None:
            raise ConfigError(f"extensions.conf:{setting.line}: bad priority {parts[1]!r}")
        last = max(current.priorities, default=0)
        number = last + 1 if priority.group(1) == "n" else int(priority.group(1))
        app, data = split_app(parts[2].strip())
        current.priorities[number] = Priority(number, priority.group(2), app, data, setting.line)


def split_args(text: str, delimiter: str = ",", *, keep_quotes: bool = False) -> list[str]:
    """Application arguments as ``__ast_app_separate_args`` (main/app.c) splits them.

    The delimiter counts only outside parentheses, square brackets and double quotes (brackets
    and parentheses are counted even inside quotes, as there). A backslash protects the next
    character. STANDARD args (``AST_STANDARD_APP_ARGS``: AGI, Dial, Queue, ...) lose their
    quotes and backslashes; RAW args (``keep_quotes``: Gosub, GotoIf, ExecIf) keep them.
    Substitution happens before: a comma inside a variable's value splits it too."""
    args: list[str] = []
    current: list[str] = []
    paren = bracket = 0
    quoted = escaped = False
    for char in text:
        if escaped:
            current.append(char)  # the protected character, never a delimiter
            escaped = False
        elif char == "(":
            paren += 1
            current.append(char)
        elif char == ")":
            paren = max(paren - 1, 0)
            current.append(char)
        elif char == "[":
            bracket += 1
            current.append(char)
        elif char == "]":
            bracket = max(bracket - 1, 0)
            current.append(char)
        elif char == '"' and delimiter != '"':
            quoted = not quoted
            if keep_quotes:
                current.append(char)
        elif char == "\\":
            escaped = True
            if keep_quotes:
                current.append(char)
        elif char == delimiter and not (paren or bracket or quoted):
            args.append("".join(current))
            current = []
        else:
            current.append(char)
    args.append("".join(current))
    return args


def parse_options(text: str) -> dict[str, str]:
    """Application options like ``ast_app_parse_options``: letters, each with an optional
    ``(argument)`` whose parentheses may nest (``b(ctx^s^1(a,b))``)."""
    options: dict[str, str] = {}
    i = 0
    while i < len(text):
        letter = text[i]
        i += 1
        argument = ""
        if i < len(text) and text[i] == "(":
            depth, start = 1, i + 1
            i += 1
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            argument = text[start : i - 1]
        options[letter] = argument
    return options


def split_first(text: str, delimiter: str) -> tuple[str, str | None]:
    """Split at the first ``delimiter`` outside parentheses (RAW args, two fields)."""
    parts = split_args(text, delimiter, keep_quotes=True)
    if len(parts) == 1:
        return parts[0], None
    return parts[0], delimiter.join(parts[1:])


def target_parts(target: str) -> Sequence[str]:
    """``[[context,]exten,]priority`` split into its parts."""
    return [part.strip() for part in target.split(",")]


# ---------------------------------------------------------------------------------------------
# manager.conf

# [general] keys __init_manager() reads (main/manager.c, 22.10.1); TLS keys (tls*, ssl*) go to
# ast_tls_read_conf. Anything else: NOTICE "Invalid keyword <k> = <v> in manager.conf [general]".
MANAGER_GENERAL_KEYWORDS = frozenset(
    [
        "enabled",
        "webenabled",
        "port",
        "bindaddr",
        "brokeneventsaction",
        "allowmultiplelogin",
        "displayconnects",
        "timestampevents",
        "debug",
        "httptimeout",
        "authtimeout",
        "authlimit",
        "channelvars",
        "disabledevents",
    ]
)
# A user section's keys; eventfilter may carry criteria: eventfilter(action(exclude),...).
MANAGER_USER_KEYWORDS = frozenset(
    [
        "secret",
        "deny",
        "permit",
        "acl",
        "read",
        "write",
        "displayconnects",
        "allowmultiplelogin",
        "writetimeout",
        "setvar",
    ]
)
# perms[] in main/manager.c: the classes read/write accept.
MANAGER_CLASSES = frozenset(
    [
        "system",
        "call",
        "log",
        "verbose",
        "command",
        "agent",
        "user",
        "config",
        "dtmf",
        "reporting",
        "cdr",
        "dialplan",
        "originate",
        "agi",
        "cc",
        "aoc",
        "test",
        "security",
        "message",
        "all",
        "none",
    ]
)


def check_manager_conf(text: str) -> list[str]:
    """What Asterisk 22 would not take from ``text`` as manager.conf: unknown ``[general]``
    keys (logged as NOTICE), unknown user options (ignored) and unknown permission classes."""
    problems: list[str] = []
    for section in parse_config(text, "manager.conf"):
        for setting in section.settings:
            key = setting.key.lower()
            if section.name.lower() == "general":
                if key not in MANAGER_GENERAL_KEYWORDS and not key.startswith(("tls", "ssl")):
                    problems.append(
                        f"Invalid keyword <{setting.key}> = <{setting.value}> in manager.conf [general]"
                    )
            elif key in ("read", "write"):
                classes = {c.strip().lower() for c in setting.value.split(",") if c.strip()}
                problems.extend(
                    f"[{section.name}] {key}: unknown class {c}" for c in sorted(classes - MANAGER_CLASSES)
                )
            elif key not in MANAGER_USER_KEYWORDS and not key.startswith("eventfilter"):
                problems.append(f"{setting.key} is an unknown option.")
    return problems
