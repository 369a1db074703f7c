"""Every channel variable shared by the dialplans and the controller, named once.

The dialplan calls a route, then branches on what the controller set: the destination as
``CR_ACTION`` / ``CR_TARGET`` / ``CR_ARG`` (the wazo ACTION/ACTIONARG idea), plus the dialled
council's language and prompt set so callers hear that council whichever centre answers.

On the wire the controller sets them all at once, as its last command: ``CR_ROUTE`` holds the
fields of :data:`ROUTE_FIELDS` joined by ``|``, and the dialplan's ``callrouter-unpack``
subroutine splits it into the variables below. One ``SET VARIABLE`` instead of a dozen keeps a
routing session to a couple of round trips, and an empty ``CR_ROUTE`` (cleared before every
``AGI()``) tells "the controller was unreachable or failed" from "the controller finished"
(Asterisk reports AGISTATUS=FAILURE after a script that succeeded if a STREAM FILE hit a
missing prompt).
"""

from __future__ import annotations

# --- set by the controller ------------------------------------------------------------------
ACTION = "CR_ACTION"  # queue | wait | menu | payment | dial | voicemail | hangup
TARGET = "CR_TARGET"  # Asterisk queue, menu, payment line, E.164 number (not a dial string), mailbox, prompt
ARGUMENT = "CR_ARG"  # queue: max wait in seconds; dial: label
REASON = "CR_REASON"  # open | closed | emergency | unknown_number | overflow | failover | ...
TENANT = "CR_TENANT"  # the dialled council's tenant id
PROMPTS = "CR_PROMPTS"  # the dialled council's prompt set
LANGUAGE = "CHANNEL(language)"  # the dialled council's language: prompts are looked up in it
QUEUE = "CR_QUEUE"  # the plan queue (tenant's name) behind CR_TARGET, for the overflow route
PRELUDE = "CR_PRELUDE"  # prompts to play before a menu: "prompt:skip+prompt:" (':skip' = skippable)
CENTRE = "CR_CENTRE"  # partner centre id when CR_ACTION=dial goes to a partner centre
SURVEY = "CR_SURVEY"  # 1: offer the satisfaction survey after the adviser hangs up
PAYMENT_REFERENCE = "CR_PAYMENT_REF"  # a checked payment reference (never card data), or empty
SURVEY_SCORE = "CR_SURVEY_SCORE"  # +1 good, 0 average, -1 poor, empty when not answered
MODE = "CR_MODE"  # "static": set by the fail-static script; the dialplan then avoids the controller
ROUTE = "CR_ROUTE"  # the packed fields of ROUTE_FIELDS, set last; empty: the controller did not finish
HOME = "CR_HOME"  # this centre's id (the plan's ``centre``): sent with a call to a partner centre
# The wait loop (callrouter-wait): the caller's times, ``joined/deadline/announced/offered``
# (whole epoch seconds), set by the wait route and handed back to it with the next step.
WAIT = "CR_WAIT"

# --- set by the dialplan ----------------------------------------------------------------------
# callrouter-unpack sets it (with __, so the Local hop of a partner team's queue member has it
# too) with CHANNEL(language) from the route's language field: the call's language is settled
# (the caller's choice, the default after a choice offered, the tenant's only language, or the
# language a partner centre sent with the call). It goes to a partner centre with the call
# (HEADER_LANGUAGE). The static route keeps it; it sets the tenant's first language only when
# it is empty. A call sent on before the choice was offered leaves it empty (the route's
# language field is empty then), so the partner centre offers the choice itself.
CALL_LANGUAGE = "CR_LANGUAGE"

# --- read by the controller (set by Asterisk) -------------------------------------------------
QUEUESTATUS = "QUEUESTATUS"  # Queue(): TIMEOUT FULL JOINEMPTY LEAVEEMPTY JOINUNAVAIL LEAVEUNAVAIL WITHDRAW
# Queue(): the caller's position as they left the queue (app_queue leave_queue), for every exit:
# timeout, a key (queues.conf context=), withdraw. Passed back as Queue()'s position argument.
QUEUEPOSITION = "QUEUEPOSITION"
WAIT_EVENT = "CR_WAIT_EVENT"  # set by the dialplan: entry | slice | key<digit> (the wait route's event)
WAIT_LEFT = "CR_WAIT_LEFT"  # set by the dialplan: the plan queue's timeout, for callrouter-wait-static
# Read by callrouter-inbound from the inbound INVITE's headers (PJSIP channels only), URI-encoded
# (URIENCODE: a comma, quote, pipe or backslash cannot split or escape the route's arguments),
# and passed to the route as its 2nd and 3rd arguments. Untrusted: the controller checks them.
FROM_CENTRE = "CR_FROM_CENTRE"  # HEADER_CENTRE: the partner centre that sent the call here
FROM_CALL = "CR_FROM_CALL"  # HEADER_LINKEDID: the call's Linkedid at that centre
FROM_DIALLED = "CR_FROM_DIALLED"  # HEADER_DIALLED: the council number the caller dialled there
# HEADER_LANGUAGE, read and URI-encoded the same way but not passed as an argument: the route
# asks for it (GET VARIABLE) only when the call came from a known partner centre, so the
# arguments of every other call stay as captured (four agi_arg_N lines).
FROM_LANGUAGE = "CR_FROM_LANGUAGE"  # HEADER_LANGUAGE: the caller's language, settled there

# --- SIP headers of a call dialled to a partner centre (callrouter-headers, partner) ------------
HEADER_TENANT = "X-Callrouter-Tenant"  # the dialled council
HEADER_DIALLED = "X-Callrouter-Dialled"  # the number the caller dialled
HEADER_LINKEDID = "X-Callrouter-Linkedid"  # the call's Linkedid here: the contact record's id
HEADER_CENTRE = "X-Callrouter-Centre"  # this centre's id (CR_HOME)
HEADER_LANGUAGE = "X-Callrouter-Language"  # the call's settled language (CR_LANGUAGE), when it is
PARTNER_HEADERS = (HEADER_TENANT, HEADER_DIALLED, HEADER_LINKEDID, HEADER_CENTRE, HEADER_LANGUAGE)

# --- set on the adviser's channel by their desktop (AMI Setvar), read by the dialplan ----------
DISPOSITION = "CR_DISPOSITION"  # resolved | back_office:<team> | avoidable:<reason> | complaint

ACTIONS = ("queue", "wait", "menu", "payment", "dial", "voicemail", "hangup")
ROUTE_SEPARATOR = "|"
# Between CR_PRELUDE's items. Not a comma: the dialplan passes CR_PRELUDE as an AGI() argument,
# and Asterisk splits application data on every comma after substitution.
PRELUDE_SEPARATOR = "+"
ROUTE_FIELDS = (
    ACTION,
    TARGET,
    ARGUMENT,
    TENANT,
    PROMPTS,
    LANGUAGE,
    QUEUE,
    CENTRE,
    SURVEY,
    REASON,
    PRELUDE,
    MODE,
    HOME,
)
SET_BY_CONTROLLER = (*ROUTE_FIELDS, PAYMENT_REFERENCE, SURVEY_SCORE, WAIT, ROUTE)
READ_BY_CONTROLLER = (
    QUEUESTATUS, QUEUEPOSITION, WAIT_EVENT, FROM_CENTRE, FROM_CALL, FROM_DIALLED, FROM_LANGUAGE,
)  # fmt: skip

# --- queued callbacks: set by the dialler's AMI Originate on the Local channel it makes -----------
# (ivr/dialler.py; dialplans/callrouter.conf [callrouter-callback-adviser], [callrouter-callback-caller])
CALLBACK_ID = "CR_CB_ID"  # the callback's id
CALLBACK_DIAL = "CR_CB_DIAL"  # the dial's number (1, 2...): reported back in CallbackOutcome
CALLBACK_QUEUE = "CR_CB_QUEUE"  # the Asterisk queue the adviser leg joins
CALLBACK_POSITION = "CR_CB_POSITION"  # the position it joins at (Queue()'s 9th argument)
CALLBACK_NUMBER = "CR_CB_NUMBER"  # the caller's number, E.164 (dialled on CR_TRUNK)
CALLBACK_RING_S = "CR_CB_RING_S"  # seconds the caller's phone rings
CALLBACK_CLI = "CR_CB_CLI"  # "<council name>" <number>: what the caller's phone shows
CALLBACK_OUTCOME_EVENT = "CallbackOutcome"  # UserEvent: Callback, Dial, DialStatus, AnsweredTime
