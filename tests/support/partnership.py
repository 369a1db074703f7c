"""Two partner centres for the whole-stack tests and benchmark (``tests/support/stacks.py``).

Centre A, ``charnwood`` (the example plan), answers Charnwood's and Harborough's lines; centre
B, ``harborough`` (Harborough's own customer services team), answers Harborough's line too and
takes Charnwood's callers when A is swamped, in Charnwood's name: A's plan dials B's number
for them (``centres.harborough``, 01632 960400), which B's plan gives to its tenant
``charnwood`` (Charnwood's prompts, language and CRM, B's team's queue). The other way, B
dials A's 01632 960300, which A's plan gives to Harborough. Both plans name the fake CRM of
each council (the webhook secret in ``CRM_SECRET``, as ``records deliver`` is started by
:func:`tests.records.conftest.worker_process`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from emulator.agi import CallerScript, PressAfterPrompt
from tests.controller.conftest import EXAMPLE
from tests.support.stacks import StackSpec

A, B = "charnwood", "harborough"
CHARNWOOD_LINE = "01632960100"  # Charnwood's council number, answered at A
HARBOROUGH_LINE = "01632960001"  # Harborough's council number, answered at A and at B
TO_B = "+441632960400"  # B's number for Charnwood's callers (A's plan: centres.harborough)
TO_A = "+441632960300"  # A's number for Harborough's callers (B's plan: centres.charnwood)
PEAK = 10  # callers waiting: Charnwood's general queue enters overflow (example plan: waiting 10)
TEAM = ("PJSIP/hdc-team-1", "PJSIP/hdc-team-2")  # B's advisers for Charnwood's callers


def plan_a(folder: Path, crm: dict[str, str]) -> Path:
    """The example plan (centre charnwood), with the councils' CRMs at the fake ones and A's
    number for Harborough's callers sent by B (``01632 960300``) answered as Harborough, and
    Charnwood's line in Welsh (as at B)."""
    plan = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    plan["tenants"]["harborough"]["numbers"].append("01632 960300")
    plan["tenants"]["charnwood"]["languages"] = ["cy"]  # not B's own (en): the check tells them apart
    for name, tenant in plan["tenants"].items():
        tenant["crm"] = {"sinks": {"crm": {"type": "webhook", "url": crm[name], "secret_env": "CRM_SECRET"}}}
    path = folder / "plan-a.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


PLAN_B = """
version: 1
centre: harborough
centres:
  charnwood: {name: "Charnwood Borough Council contact centre", number: "01632 960300"}
  harborough: {name: "Harborough District Council customer services team", number: "01632 960400"}
tenants:
  harborough:
    name: "Harborough District Council"
    numbers: ["01632 960001"]
    languages: ["en"]
    prompts: "harborough"
    hours: {weekdays: ["08:30-17:30"]}
    entry: {type: menu, menu: main}
    out_of_hours: {type: external, number: "01632 960999", label: "Harborough out-of-hours service"}
    emergency_cover: {type: queue, queue: revenues}
    menus:
      main:
        greeting: "harborough/welcome"
        prompt: "harborough/main-menu"
        options:
          "1": {type: queue, queue: revenues}
        on_invalid: {type: queue, queue: revenues}
        on_timeout: {type: queue, queue: revenues}
    queues:
      revenues:
        asterisk_queue: "hdc-local"
        service: "Council tax and benefits"
        overflow:
          enter: {waiting: 10, longest_wait_s: 420, no_adviser: true}
          leave: {waiting: 5, longest_wait_s: 240}
          to: {type: external, centre: charnwood, label: "Charnwood contact centre"}
          partner_min_available: 1
        failover: {type: voicemail, mailbox: "200@harborough"}
    crm: {sinks: {crm: {type: webhook, url: "HDC_CRM", secret_env: CRM_SECRET}}}
  charnwood:
    # Charnwood's callers overflowed here by Charnwood's centre: they dial 01632 960400 and
    # hear Charnwood's own greeting and menu, and wait for the team kept for them.
    name: "Charnwood Borough Council"
    numbers: ["01632 960400"]
    languages: ["cy"]
    prompts: "charnwood"
    entry: {type: menu, menu: main}
    out_of_hours: {type: external, number: "01632 960199", label: "Charnwood out-of-hours service"}
    emergency_cover: {type: queue, queue: general}
    menus:
      main:
        greeting: "charnwood/welcome"
        prompt: "charnwood/main-menu"
        options:
          "1": {type: queue, queue: general}
        invalid_prompt: "charnwood/invalid-option"
        on_invalid: {type: queue, queue: general}
        on_timeout: {type: queue, queue: general}
    queues:
      general:
        asterisk_queue: "hdc-team"
        service: "Harborough's team answering Charnwood's callers"
        failover: {type: voicemail, mailbox: "100@charnwood"}
    crm: {sinks: {crm: {type: webhook, url: "CBC_CRM", secret_env: CRM_SECRET}}}
"""


def plan_b(folder: Path, crm: dict[str, str]) -> Path:
    path = folder / "plan-b.yaml"
    path.write_text(PLAN_B.replace("HDC_CRM", crm[B]).replace("CBC_CRM", crm[A]), encoding="utf-8")
    return path


def partnership(folder: Path, crm: dict[str, str]) -> list[StackSpec]:
    """A and B, each with its plan (``crm``: council -> its CRM's webhook URL), the queue its
    partner sees, and its advisers: at A one for Charnwood's and one for Harborough's callers,
    at B two in the team for Charnwood's callers and nobody in Harborough's own queue."""
    return [
        StackSpec(
            A,
            plan_a(folder, crm),
            "hdc-revenues",
            {"cbc-general": ["PJSIP/cbc-1"], "hdc-revenues": ["PJSIP/hdc-rev-1"]},
        ),
        StackSpec(B, plan_b(folder, crm), "hdc-team", {"hdc-team": TEAM}),
    ]


def charnwood_caller(n: int) -> CallerScript:
    return CallerScript(dial=CHARNWOOD_LINE, caller=f"0770090{n:04d}", steps=[PressAfterPrompt("1")])


def harborough_caller(n: int) -> CallerScript:
    return CallerScript(dial=HARBOROUGH_LINE, caller=f"0770091{n:04d}", steps=[PressAfterPrompt("1")])
