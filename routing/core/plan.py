"""The routing plan a telephony engineer writes: its shape, as pydantic models (pure).

This is the first validation stage (shape, types, ranges). Relations between parts
(unknown references, cycles, reachability) are checked by :mod:`routing.core.validate`.

Phone numbers, DTMF keys, times and dates are strings in the plan: YAML 1.1 reads
``18:00`` as 1080, ``0123`` as 83 and ``no`` as False, so a value of the wrong type
is refused with "quote this value" rather than quietly converted.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from routing.core import numbers, times

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_PROMPT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$")
_DTMF_KEY = re.compile(r"^[0-9*#]$")
_LANGUAGE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
_ASTERISK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,79}$")


def _need_str(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "Input should be a valid string")
    return value


def _pattern(regex: re.Pattern[str], what: str, example: str) -> PlainValidator:
    def check(value: object) -> str:
        text = _need_str(value)
        if not regex.match(text):
            raise PydanticCustomError(
                "bad_format",
                "'{text}' is not a valid {what} (e.g. {example})",
                {"text": text, "what": what, "example": example},
            )
        return text

    return PlainValidator(check)


def _converted(parse: Any) -> PlainValidator:
    def check(value: object) -> Any:
        text = _need_str(value)
        try:
            return parse(text)
        except ValueError as exc:
            raise PydanticCustomError("bad_format", str(exc)) from None

    return PlainValidator(check)


Name = Annotated[str, _pattern(_NAME, "name", "revenues: lower case, digits, - and _")]
Prompt = Annotated[str, _pattern(_PROMPT, "prompt name", "harborough/welcome")]
DtmfKey = Annotated[str, _pattern(_DTMF_KEY, "DTMF key", '"1", "*" or "#"')]
Language = Annotated[str, _pattern(_LANGUAGE, "language", "en or cy")]
AsteriskName = Annotated[str, _pattern(_ASTERISK_NAME, "Asterisk name", "hdc-revenues")]
Text = Annotated[str, PlainValidator(_need_str)]
PhoneNumber = Annotated[str, _converted(numbers.normalise)]
ClockRangeField = Annotated[times.ClockRange, _converted(times.parse_range)]
DateField = Annotated[date, _converted(times.parse_date)]
LocalDateTime = Annotated[datetime, _converted(times.parse_local_datetime)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- destinations: a tagged union on ``type`` ------------------------------------------


class QueueDest(Model):
    type: Literal["queue"]
    queue: Name


class MenuDest(Model):
    type: Literal["menu"]
    menu: Name


class AnnouncementDest(Model):
    """Play a prompt, then go on to ``then``."""

    type: Literal["announcement"]
    prompt: Prompt
    then: Destination


class PaymentDest(Model):
    """Hand the caller to a PCI-hosted payment line: card digits never reach us."""

    type: Literal["payment"]
    line: Name


class ExternalDest(Model):
    """Dial out: a partner centre (``centre``) or any number (``number``)."""

    type: Literal["external"]
    number: PhoneNumber | None = None
    centre: Name | None = None
    label: Text | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ExternalDest:
        if (self.number is None) == (self.centre is None):
            raise PydanticCustomError("one_of", "give exactly one of 'number' or 'centre'")
        return self


class VoicemailDest(Model):
    type: Literal["voicemail"]
    mailbox: Annotated[
        str, _pattern(re.compile(r"^[0-9A-Za-z_-]+@[0-9A-Za-z_-]+$"), "mailbox", "100@harborough")
    ]


class HangupDest(Model):
    type: Literal["hangup"]
    prompt: Prompt | None = None


Destination = Annotated[
    QueueDest | MenuDest | AnnouncementDest | PaymentDest | ExternalDest | VoicemailDest | HangupDest,
    Field(discriminator="type"),
]
DESTINATION_TYPES = ("queue", "menu", "announcement", "payment", "external", "voicemail", "hangup")


# --- queues and overflow ---------------------------------------------------------------


class Thresholds(Model):
    """Any one threshold reached is enough (for ``enter``); none may be reached (to leave)."""

    waiting: Annotated[int, Field(ge=0)] | None = None
    longest_wait_s: Annotated[int, Field(ge=0)] | None = None
    callers_per_available: Annotated[float, Field(gt=0)] | None = None
    no_adviser: bool = False


class OverflowPolicy(Model):
    """Send new callers elsewhere while the queue is overloaded, with hysteresis.

    Overflow starts when any ``enter`` threshold is reached and stops only when no
    ``leave`` threshold is reached. A partner centre named by ``to`` receives
    overflow only when its published state is fresh and shows capacity
    (``partner_min_available`` free advisers); otherwise ``otherwise`` applies
    (default: stay in the local queue)."""

    enter: Thresholds
    leave: Thresholds | None = None
    to: Destination
    otherwise: Destination | None = None
    when_unknown: Literal["stay", "overflow"] = "stay"
    partner_min_available: Annotated[int, Field(ge=1)] = 1
    max_wait_s: Annotated[int, Field(ge=10)] | None = None


NumberKind = Literal["geographic", "non_geographic", "mobile", "freephone", "premium", "international"]


class CallbackPolicy(Model):
    """Queued callback: offered when the expected wait is above ``offer_above_s``; the caller
    hangs up and keeps their place (the callback holds the call's original join time)."""

    offer_above_s: Annotated[int, Field(ge=0, le=7200)] = 300
    offer_key: DtmfKey = "1"  # during the wait, this key hears the offer
    offer_every_s: Annotated[int, Field(ge=30, le=1800)] | None = 120  # offered again while waiting
    prompt: Prompt | None = None  # the offer; the prompt set's default when absent
    allow_numbers: Annotated[list[NumberKind], Field(min_length=1)] = [
        "geographic",
        "non_geographic",
        "mobile",
    ]
    initial_delay_s: Annotated[int, Field(ge=0, le=3600)] = 0
    ring_s: Annotated[int, Field(ge=10, le=120)] = 30
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    retry_delay_s: Annotated[int, Field(ge=30, le=86400)] = 300
    at_closing: Literal["next_morning", "cancel"] = "next_morning"


class WaitAnnouncements(Model):
    """Announcements to a waiting caller: position and expected wait, from the same estimate
    as the callback offer; above ``max_figure_s`` only "more than N minutes" is said."""

    position: bool = True
    expected_wait: bool = True
    every_s: Annotated[int, Field(ge=20, le=1800)] = 60
    max_figure_s: Annotated[int, Field(ge=60, le=7200)] = 600


class Queue(Model):
    asterisk_queue: AsteriskName
    service: Text | None = None
    timeout_s: Annotated[int, Field(ge=5, le=7200)] = 600
    overflow: OverflowPolicy | None = None
    failover: Destination | None = None
    callback: CallbackPolicy | None = None
    announce_wait: WaitAnnouncements | None = None


# --- menus -------------------------------------------------------------------------------


class Menu(Model):
    """An IVR menu: one DTMF key per option; invalid keys and silences share ``max_tries``."""

    greeting: Prompt | None = None
    prompt: Prompt
    options: dict[DtmfKey, Destination]
    timeout_s: Annotated[int, Field(ge=1, le=60)] = 5
    max_tries: Annotated[int, Field(ge=1, le=10)] = 3
    invalid_prompt: Prompt | None = None
    timeout_prompt: Prompt | None = None
    on_invalid: Destination
    on_timeout: Destination
    repeat_key: DtmfKey | None = None
    parent_key: DtmfKey | None = None


# --- time ----------------------------------------------------------------------------------

WeekdayName = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun", "weekdays", "weekend"]
DEFAULT_HOURS: dict[WeekdayName, list[times.ClockRange]] = {
    "weekdays": [times.parse_range("08:30-17:30")],
}


class Closure(Model):
    """A dated closure: a whole ``date``, or local ``from``..``until`` (half-open)."""

    model_config = ConfigDict(populate_by_name=True)

    date: DateField | None = None
    start: LocalDateTime | None = Field(default=None, alias="from")
    until: LocalDateTime | None = None
    reason: Text
    destination: Destination | None = None

    @model_validator(mode="after")
    def _dated(self) -> Closure:
        if (self.date is None) == (self.start is None and self.until is None):
            raise PydanticCustomError("one_of", "give either 'date', or 'from' and 'until'")
        if self.date is None and (self.start is None or self.until is None):
            raise PydanticCustomError("one_of", "give both 'from' and 'until'")
        if self.start is not None and self.until is not None and self.until <= self.start:
            raise PydanticCustomError("order", "'until' must be after 'from'")
        return self

    def span(self) -> tuple[datetime, datetime]:
        """The closure as naive local ``[start, end)``."""
        if self.date is not None:
            start = datetime.combine(self.date, datetime.min.time())
            return start, datetime.combine(date.fromordinal(self.date.toordinal() + 1), start.time())
        assert self.start is not None
        assert self.until is not None
        return self.start, self.until


class SpecialOpening(Model):
    """Hours for one date that replace the weekly hours (e.g. a Saturday for a bin change).

    A bank holiday or a dated closure still wins unless ``overrides_holiday`` is set."""

    date: DateField
    hours: Annotated[list[ClockRangeField], Field(min_length=1)]
    reason: Text
    overrides_holiday: bool = False


class Announcement(Model):
    """A topic announcement played before the menu between local ``start`` and ``end``."""

    id: Name
    prompt: Prompt
    start: LocalDateTime
    end: LocalDateTime
    skippable: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Announcement:
        if self.end <= self.start:
            raise PydanticCustomError("order", "'end' must be after 'start'")
        return self


class PaymentReference(Model):
    """An optional payment reference captured before the hand-off (never a card number).

    Input longer than ``max_digits`` (a card number typed at the wrong prompt) is refused and
    never kept. After ``tries`` refused or unrecognised entries the caller goes to
    ``on_failure`` (e.g. an adviser's queue), or without it to the payment line with no reference.
    ``timeout_s``: how long to wait for the first and for each next digit."""

    prompt: Prompt
    pattern: Text
    max_digits: Annotated[int, Field(ge=1, le=12)] = 10
    invalid_prompt: Prompt | None = None
    tries: Annotated[int, Field(ge=1, le=5)] = 3
    timeout_s: Annotated[int, Field(ge=2, le=15)] = 6
    on_failure: Destination | None = None

    @model_validator(mode="after")
    def _compiles(self) -> PaymentReference:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise PydanticCustomError(
                "bad_format", "pattern does not compile: {err}", {"err": str(exc)}
            ) from None
        return self


class PaymentLine(Model):
    number: PhoneNumber
    label: Text
    reference: PaymentReference | None = None


class Survey(Model):
    """A GovMetric-style satisfaction question after the adviser hangs up: 1 Good, 2 Average, 3 Poor."""

    prompt: Prompt
    thanks_prompt: Prompt | None = None
    timeout_s: Annotated[int, Field(ge=1, le=30)] = 6


class LanguageChoice(Model):
    """The language choice a tenant with more than one language offers at the start of a call.

    ``prompt`` is played once per language, in the order of the tenant's ``languages`` (the
    order spoken: Welsh first for a Welsh council), each time with the channel's language set
    to that language, so Asterisk plays ``<sounds>/<language>/<prompt>`` ("I barhau yn Gymraeg,
    pwyswch 1", then "To continue in English, press 2"). A key interrupts it. ``keys`` default
    to "1" for the first language, "2" for the second, and so on. A silence or a key that is not
    listed asks again, up to ``tries`` times in all; then ``on_timeout`` (default: the first
    language) is taken."""

    keys: dict[DtmfKey, Language] | None = None
    prompt: Prompt | None = None  # default: "<prompts>/language-choice"
    timeout_s: Annotated[int, Field(ge=1, le=30)] = 5
    tries: Annotated[int, Field(ge=1, le=5)] = 2
    on_timeout: Language | None = None


# --- contact records to the council's CRM ------------------------------------------------

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
EnvName = Annotated[str, _pattern(_ENV_NAME, "environment variable name", "HDC_CRM_SECRET")]


class _SecretSource(Model):
    """Where a sink's secret is read: an environment variable or a file, never the plan."""

    secret_env: EnvName | None = None
    secret_file: Text | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> _SecretSource:
        if (self.secret_env is None) == (self.secret_file is None):
            raise PydanticCustomError(
                "one_of", "give exactly one of 'secret_env' or 'secret_file' (the secret itself never)"
            )
        return self


class WebhookSink(_SecretSource):
    """POST each record version to the CRM as a signed CloudEvent (``docs/contact-records-delivery.md``)."""

    type: Literal["webhook"]
    url: Text
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    max_in_flight: Annotated[int, Field(ge=1, le=512)] = 64
    batch_size: Annotated[int, Field(ge=1, le=500)] = 1
    """1: one event per request (structured mode). More: CloudEvents batched mode, for CRMs
    that accept ``application/cloudevents-batch+json``."""

    @model_validator(mode="after")
    def _https(self) -> WebhookSink:
        scheme, _, rest = self.url.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0] if rest else ""
        if not host or not (scheme == "https" or (scheme == "http" and host in _LOOPBACK_HOSTS)):
            raise PydanticCustomError(
                "bad_format",
                "'{url}' is not an https:// URL (plain http only to this machine, for tests)",
                {"url": self.url},
            )
        return self


class FileSink(Model):
    """One JSON Lines file per tenant per day under ``directory``, for CRMs that import files."""

    type: Literal["file"]
    directory: Text


CrmSink = Annotated[WebhookSink | FileSink, Field(discriminator="type")]


class Crm(Model):
    """Where the tenant's contact records are delivered, by sink name."""

    sinks: Annotated[dict[Name, CrmSink], Field(min_length=1)]


BankHolidays = Literal["england-and-wales", "scotland", "northern-ireland", "none"]


ServiceLevelSeconds = Annotated[int, Field(ge=1, le=3600)]


class RecordsPolicy(Model):
    """What the council's own archive of contact records keeps, and the service-level time its
    report counts answers within (``docs/reports.md``)."""

    retention_days: Annotated[int, Field(ge=1, le=36500)] | None = None  # None: kept for ever
    archive_after_days: Annotated[int, Field(ge=1, le=36500)] | None = None  # None: never compressed
    service_level_s: ServiceLevelSeconds = 20
    queue_service_level_s: dict[Name, ServiceLevelSeconds] = {}  # by the tenant's queue name

    @model_validator(mode="after")
    def _archive_before_purge(self) -> RecordsPolicy:
        if (
            self.retention_days is not None
            and self.archive_after_days is not None
            and self.archive_after_days >= self.retention_days
        ):
            raise PydanticCustomError(
                "order",
                "archive_after_days {archive} must be below retention_days {retention}",
                {"archive": self.archive_after_days, "retention": self.retention_days},
            )
        return self


class Tenant(Model):
    """A council whose public number the centre answers, under the council's own name."""

    name: Text
    numbers: Annotated[list[PhoneNumber], Field(min_length=1)]
    languages: Annotated[list[Language], Field(min_length=1)] = ["en"]
    """In the order spoken in the language choice; the first is the default (see LanguageChoice)."""
    language_choice: LanguageChoice | None = None  # only with more than one language
    prompts: Name
    timezone: Text = "Europe/London"
    hours: dict[WeekdayName, list[ClockRangeField]] = Field(default_factory=lambda: dict(DEFAULT_HOURS))
    bank_holidays: BankHolidays = "england-and-wales"
    closures: list[Closure] = []
    special_openings: list[SpecialOpening] = []
    entry: Destination
    out_of_hours: Destination | None = None
    emergency_cover: Destination | None = None
    queues: dict[Name, Queue] = {}
    menus: dict[Name, Menu] = {}
    payment_lines: dict[Name, PaymentLine] = {}
    announcements: list[Announcement] = []
    survey: Survey | None = None
    avoidable_contact_reasons: list[Name] = []  # what an adviser may name as an avoidable contact
    records: RecordsPolicy = RecordsPolicy()
    crm: Crm | None = None

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _known_zone(self) -> Tenant:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "bad_format", "unknown time zone '{tz}' (e.g. Europe/London)", {"tz": self.timezone}
            ) from None
        return self

    @model_validator(mode="after")
    def _distinct_reasons(self) -> Tenant:
        seen: set[str] = set()
        for reason in self.avoidable_contact_reasons:
            if reason in seen:
                raise PydanticCustomError(
                    "duplicate", "avoidable contact reason '{reason}' is listed twice", {"reason": reason}
                )
            seen.add(reason)
        return self

    @model_validator(mode="after")
    def _known_service_level_queues(self) -> Tenant:
        unknown = sorted(set(self.records.queue_service_level_s) - set(self.queues))
        if unknown:
            raise PydanticCustomError(
                "unknown_reference",
                "records.queue_service_level_s: unknown queue '{queue}' (known: {known})",
                {"queue": unknown[0], "known": ", ".join(sorted(self.queues)) or "none"},
            )
        return self


class Centre(Model):
    """A contact centre: this one or a partner reached by dialling ``number``."""

    name: Text
    number: PhoneNumber | None = None


class Plan(Model):
    version: Literal[1]
    centre: Name
    centres: dict[Name, Centre]
    tenants: Annotated[dict[Name, Tenant], Field(min_length=1)]
    unknown_number: Destination = HangupDest(type="hangup")


AnnouncementDest.model_rebuild()
