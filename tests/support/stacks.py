"""Whole contact centres on loopback, each its own stack, exchanging capacity with each other.

One :class:`Stack` per centre: its own redis-server, its fake AMI (the centre's queues), a real
``callrouter serve`` (controller, AMI consumer publishing the centre's snapshot, records), a
real ``callrouter web`` over HTTPS (the partner exchange, signed with one shared secret per
partnership), a real ``callrouter records deliver`` (to the councils' CRMs named in the plan)
and the emulated Asterisk running the shipped dialplan against that centre's serve::

    specs = [StackSpec("charnwood", plan_a, "hdc-revenues"), StackSpec("harborough", plan_b, "hdc-team")]
    async with running_stacks(specs, tmp_path) as (a, b):
        at_a = await a.call(CallerScript(dial="01632960100", steps=[...]))
        at_b = await b.receive(at_a, CallerScript(steps=[...]))  # A's dial to B arrives at B

Every process binds 127.0.0.1, runs under ``timeout`` (or is stopped by the context manager)
and logs JSON lines into the test's folder (``<centre>-serve.log``, ``-web.log``,
``-deliver.log``)."""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from redis.asyncio import Redis

from emulator.agi import CallerScript
from emulator.ami import FakeAmi
from emulator.ami_permissions import CALLROUTER_USER_WRITE
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk, CallRecord, place_call
from emulator.pbx import Channel, Invite
from routing.core.linkedid import make_uniqueid
from routing.core.live import QueueSnapshot
from routing.live.store import read_centre_snapshot
from tests.ami.helpers import wait_until
from tests.records.conftest import worker_process
from tests.support.certs import self_signed
from tests.support.processes import stop_tree
from tests.support.redis_server import RedisServer, free_port, running_redis
from tests.support.serve_process import SERVE_AMI_SECRET, serve_started, start_serve, stop_processes
from tests.support.web_process import running_web

_FROM = re.compile(r'^(?:"(?P<name>[^"]*)" )?<sip:(?P<number>[^@>]*)@')  # an INVITE's From
LIFETIME_S = 300  # every process and redis-server of a stack ends by itself after this
STALE_S = 3.0  # partners.stale_age_s: a partner silent this long is no longer overflowed to
SERVE_ENV = {
    "CALLROUTER_AMI_PUBLISH_INTERVAL_S": "1",  # as docs/partners.md asks of a partnership
    "CALLROUTER_AMI_PING_INTERVAL_S": "1",
    "CALLROUTER_AMI_RECONNECT_INITIAL_S": "0.1",
    "CALLROUTER_AMI_RECONNECT_MAX_S": "0.5",
    "CALLROUTER_LOG_LEVEL": "info",
}


@dataclass(frozen=True)
class StackSpec:
    """One centre: its id (``partners.centre``, ``ami.centre``, the plan's ``centre``), its plan
    and the Asterisk queue whose figures its partners see (``ami.publish_queue``); ``staff``:
    the advisers (interfaces, static members, free) in each of its Asterisk queues at the start."""

    name: str
    plan: Path
    publish_queue: str
    staff: Mapping[str, Sequence[str]] = field(default_factory=dict)
    system_name: str = ""
    """Its Asterisk's ``systemname`` (asterisk.conf): ids ``<system_name>-<seconds>.<seq>``."""


@dataclass
class Stack:
    spec: StackSpec
    redis_server: RedisServer
    redis: Redis
    fake: FakeAmi
    agi_port: int
    web_port: int
    serve: asyncio.subprocess.Process
    deliver: subprocess.Popen[bytes]
    folder: Path
    web_env: dict[str, str] = field(default_factory=dict)  # its partners.* settings
    tls: tuple[Path, Path] | None = None  # its web service's certificate and key
    web: ExitStack = field(default_factory=ExitStack)  # closing it stops this centre's web service
    plays: dict[str, QueuePlay] = field(default_factory=dict)  # Asterisk queue -> what happens there
    calls: int = 0
    epoch: int = 1795970000  # this Asterisk's uniqueids: <epoch>.<call number>, unique across stacks

    @property
    def name(self) -> str:
        return self.spec.name

    def asterisk(self) -> Asterisk:
        """This centre's emulated Asterisk: the shipped dialplan, Queue() played on its fake AMI."""
        return Asterisk(centre=CallCentre(self.fake, self._play), system_name=self.spec.system_name)

    def _play(self, queue: str, caller: Channel) -> QueuePlay:
        """``plays[queue]``, or the queue's first adviser answers (a new one if it has none)."""
        staff = self.spec.staff.get(queue) or [f"PJSIP/{queue}-adviser"]
        return self.plays.get(queue, QueuePlay(interface=staff[0]))

    async def call(self, script: CallerScript, headers: Sequence[tuple[str, str]] = ()) -> CallRecord:
        """One whole call on this centre's Asterisk (``headers``: those of its INVITE); its
        uniqueid (the record's id) is ``[<system name>-]<epoch>.<n>`` unless the script has one."""
        self.calls += 1
        uniqueid = script.uniqueid or make_uniqueid(self.epoch, self.calls, self.spec.system_name)
        return await place_call(
            "127.0.0.1",
            self.agi_port,
            replace(script, uniqueid=uniqueid),
            asterisk=self.asterisk(),
            headers=headers,
            deadline=30,
            number=self.calls,
        )

    async def receive(self, sent: CallRecord, script: CallerScript) -> CallRecord:
        """The partner's dial of ``sent`` arriving here: this Asterisk answers the INVITE the
        partner's dialplan sent (its Request-URI number, the caller in its From, every header
        it carried); ``script`` says what the caller does next (its number and name, and what
        they dial, are the INVITE's)."""
        invite = partner_invite(sent)
        found = _FROM.match(invite.from_)
        assert found is not None, invite.from_
        caller = replace(script, dial=invite.user, caller=found["number"], caller_name=found["name"])
        return await self.call(caller, invite.headers)

    async def partner_snapshot(self, centre: str) -> QueueSnapshot | None:
        return await read_centre_snapshot(self.redis, centre)

    async def start_web(self) -> str:
        """Start this centre's ``callrouter web`` (HTTPS, the partner exchange); its base URL."""
        web = running_web(
            self.redis_server.url,
            port=self.web_port,
            extra_env=self.web_env,
            tls=self.tls,
            log=self.folder / f"{self.name}-web.log",
            lifetime_s=LIFETIME_S,
        )
        # in a thread: its start-up wait must not hold up this loop (the fake AMIs run here)
        return await asyncio.to_thread(self.web.enter_context, web)

    async def stop_web(self) -> None:
        """This centre's ``callrouter web`` stops (SIGTERM): it sends its partners nothing more,
        and receives nothing from them."""
        await asyncio.to_thread(self.web.close)


def partner_invite(record: CallRecord) -> Invite:
    """The INVITE of the call's dial to the partner centre (its last outward leg)."""
    assert record.dials, f"the call dialled nothing: {record.summary()}"
    invite = record.dials[-1].invite
    assert invite is not None, record.summary()
    return invite


def _key_dir(folder: Path, me: str, others: Sequence[str], shared: dict[frozenset[str], str]) -> Path:
    """``<folder>/<me>-partners/<other>.key`` (mode 600) holding each partnership's secret."""
    keys = folder / f"{me}-partners"
    keys.mkdir()
    keys.chmod(0o700)
    for other in others:
        path = keys / f"{other}.key"
        path.write_text(shared[frozenset((me, other))] + "\n")
        path.chmod(0o600)
    return keys


@asynccontextmanager
async def running_stacks(specs: Sequence[StackSpec], folder: Path) -> AsyncIterator[list[Stack]]:
    """Every centre of ``specs`` started and partnered with every other, ready for calls: each
    serve answers, holds its AMI lease, and each centre has every partner's snapshot."""
    names = [s.name for s in specs]
    shared = {frozenset((a, b)): secrets.token_hex(32) for i, a in enumerate(names) for b in names[i + 1 :]}
    tls = {name: self_signed(folder, f"{name}-") for name in names}
    web_ports = {name: free_port() for name in names}
    async with AsyncExitStack() as stack:
        stacks: list[Stack] = []
        for index, spec in enumerate(specs):
            server = stack.enter_context(running_redis(max_lifetime_s=LIFETIME_S))
            redis = Redis.from_url(server.url)
            stack.push_async_callback(redis.aclose)
            fake = await stack.enter_async_context(
                FakeAmi(
                    "callrouter", SERVE_AMI_SECRET, system_name=spec.system_name, write=CALLROUTER_USER_WRITE
                )
            )
            for queue, interfaces in spec.staff.items():
                for n, interface in enumerate(interfaces, 1):
                    fake.add_member(queue, interface, f"{queue} adviser {n}", membership="static", send=False)
            log = folder / f"{spec.name}-serve.log"
            env = {**SERVE_ENV, "CALLROUTER_AMI_CENTRE": spec.name,
                   "CALLROUTER_AMI_PUBLISH_QUEUE": spec.publish_queue}  # fmt: skip
            serve, port = await start_serve(
                spec.plan, server.url, log, ami_port=fake.port, env=env, lifetime_s=LIFETIME_S
            )
            stack.push_async_callback(stop_processes, [serve])
            deliver = worker_process(
                spec.plan,
                server.url,
                folder / f"{spec.name}-deliver.log",
                folder / f"{spec.name}-archive",
                lifetime_s=LIFETIME_S,
            )
            stack.callback(_stop_popen, deliver)
            centre = Stack(spec, server, redis, fake, port, web_ports[spec.name], serve, deliver, folder)
            if not spec.system_name:  # else the names keep two Asterisks' ids apart, as they should
                centre.epoch += 10_000 * index
            stacks.append(centre)
        for centre in stacks:
            await wait_until(functools.partial(serve_started, folder / f"{centre.name}-serve.log"), 30)
        for centre in stacks:
            others = [n for n in names if n != centre.name]
            bundle = folder / f"{centre.name}-partners-ca.pem"
            bundle.write_text("".join(tls[o][0].read_text() for o in others))
            env = {
                "CALLROUTER_PARTNERS_CENTRE": centre.name,
                "CALLROUTER_PARTNERS_PEERS": ",".join(
                    f"{o}=https://127.0.0.1:{web_ports[o]}" for o in others
                ),
                "CALLROUTER_PARTNERS_KEY_DIR": str(_key_dir(folder, centre.name, others, shared)),
                "CALLROUTER_PARTNERS_CA_FILE": str(bundle),
                "CALLROUTER_PARTNERS_STALE_AGE_S": str(STALE_S),
                "CALLROUTER_LOG_LEVEL": "info",
            }
            centre.web_env, centre.tls = env, tls[centre.name]
            await centre.start_web()
            stack.push_async_callback(centre.stop_web)
        for centre in stacks:
            for other in names:
                if other != centre.name:
                    await until_snapshot(centre, other, lambda s: s is not None, 20)
        yield stacks


def _stop_popen(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a process started under ``timeout``; then SIGKILL to it and its descendants
    if it has not ended within 10 s."""
    stop_tree(process, timeout_s=10)


async def until_snapshot(
    centre: Stack, partner: str, check: Callable[[QueueSnapshot | None], bool], deadline_s: float = 10.0
) -> float:
    """Seconds until ``partner``'s snapshot in ``centre``'s Redis passes ``check``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(deadline_s):
        while True:
            if check(await centre.partner_snapshot(partner)):
                return loop.time() - started
            await asyncio.sleep(0.02)
