"""Two centres on one real three-primary Redis Cluster, told apart by ``redis.key_tag`` alone:
two ``callrouter serve`` processes started with ``CALLROUTER_REDIS_KEY_TAG=north`` and ``south``
(each with its own fake AMI) keep their keys in two slots served by two different primaries; each
one's AMI consumer runs its Lua scripts (writer lease, apply, reconcile) in its own slot; each
routes on its own live state (north's peak overflows, south's quiet queue does not); a toggle
written with ``callrouter toggle`` under ``north`` (the toggle script, in north's slot) is obeyed
by north alone; ``callrouter state`` under each tag reads its own centre."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import key_slot

from callrouter.cli import main
from emulator.agi import CallerScript, PressAfterPrompt
from emulator.ami import FakeAmi
from emulator.centre import CallCentre, QueuePlay
from emulator.dialplan import Asterisk, place_call
from routing.redis_keys import RedisKeys
from tests.ami.helpers import wait_until
from tests.cluster.conftest import cluster_client
from tests.controller.conftest import EXAMPLE, HARBOROUGH
from tests.support.redis_cluster import RedisClusterSet, running_cluster
from tests.support.serve_process import SERVE_AMI_SECRET, serve_started, start_serve, stop_processes

NORTH, SOUTH = RedisKeys(tag="north"), RedisKeys(tag="south")


@pytest.fixture
def cluster() -> Iterator[RedisClusterSet]:
    with running_cluster(max_lifetime_s=240) as found:
        yield found


def _slot(keys: RedisKeys) -> int:
    return int(key_slot(keys.audit_stream().encode()))


async def _call(port: int, centre: Asterisk, plays: dict[str, QueuePlay], n: int, keys: str) -> str:
    caller = f"07700900{n:03d}"
    plays[caller] = QueuePlay("answer")
    steps = [PressAfterPrompt(k) for k in keys]
    script = CallerScript(dial=HARBOROUGH, caller=caller, steps=steps, uniqueid=f"1795990000.{1000 + n}")
    return (await place_call("127.0.0.1", port, script, asterisk=centre, deadline=30, number=n + 1)).summary()


def _cli(env: dict[str, str], argv: list[str]) -> int:
    """A ``callrouter`` command run in this process with ``env`` added to its environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return main(argv)


async def test_two_centres_tagged_apart_share_a_cluster(
    cluster: RedisClusterSet, tmp_path: Path, toggle_key_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cluster.node_for_slot(_slot(NORTH)) != cluster.node_for_slot(_slot(SOUTH))  # two primaries
    redis = cluster_client(cluster)
    base_env = {**cluster.env(), "CALLROUTER_TOGGLE_KEY_FILE": str(toggle_key_env)}
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with (
            FakeAmi("callrouter", SERVE_AMI_SECRET) as north_ami,
            FakeAmi("callrouter", SERVE_AMI_SECRET) as south_ami,
        ):
            ports: dict[str, int] = {}
            for name, fake in (("north", north_ami), ("south", south_ami)):
                for i in range(1, 6):
                    fake.add_member(
                        "hdc-revenues", f"PJSIP/agent{i}", f"A{i}", membership="static", send=False
                    )
                env = {**base_env, "CALLROUTER_REDIS_KEY_TAG": name}
                log = tmp_path / f"{name}.log"
                process, ports[name] = await start_serve(
                    EXAMPLE, cluster.url, log, ami_port=fake.port, env=env
                )
                processes.append(process)
            for name in ports:
                await wait_until(functools.partial(serve_started, tmp_path / f"{name}.log"), timeout_s=20)

            # each AMI consumer's scripts write its own centre's live state, in its own slot
            for _ in range(6):
                north_ami.caller_joins("hdc-revenues")
            south_ami.caller_joins("hdc-revenues")
            async with asyncio.timeout(15):
                while (await redis.zcard(NORTH.queue_waiting("hdc-revenues")),
                       await redis.zcard(SOUTH.queue_waiting("hdc-revenues"))) != (6, 1):  # fmt: skip
                    await asyncio.sleep(0.05)
            for keys in (NORTH, SOUTH):
                assert (await redis.hget(keys.ami_status(), "writer")) is not None
            await asyncio.sleep(0.5)  # the controllers' cached live state follows within a refresh

            plays: dict[str, QueuePlay] = {}
            north = Asterisk(centre=CallCentre(north_ami, lambda queue, caller: plays[caller.caller_num]))
            south = Asterisk(centre=CallCentre(south_ami, lambda queue, caller: plays[caller.caller_num]))
            assert "queue cbc-assist" in await _call(
                ports["north"], north, plays, 0, "11"
            )  # its peak overflows
            assert "queue hdc-revenues" in await _call(ports["south"], south, plays, 1, "11")  # room: its own

            # a toggle under north: obeyed by north, not by south
            toggle = ["toggle", "--direct", "emergency", "harborough", "--on", "--reason", "flood", "--by",
                      "sam", "--expires", "2h", "--plan", str(EXAMPLE)]  # fmt: skip
            north_env = {**base_env, "CALLROUTER_REDIS_KEY_TAG": "north"}
            assert await asyncio.to_thread(_cli, north_env, toggle) == 0, capsys.readouterr().err
            async with asyncio.timeout(10):
                n = 2
                while "route (emergency)" not in await _call(ports["north"], north, plays, n, "2"):
                    n += 1
                    await asyncio.sleep(0.1)
            assert "route (emergency)" not in await _call(ports["south"], south, plays, n + 1, "2")

            capsys.readouterr()
            state = ["state", "--direct", "--plan", str(EXAMPLE), "--json"]
            found = {}
            for name in ("north", "south"):
                env = {**base_env, "CALLROUTER_REDIS_KEY_TAG": name}
                assert await asyncio.to_thread(_cli, env, state) == 0
                found[name] = json.loads(capsys.readouterr().out)
            assert "emergency" in found["north"]["tenants"]["harborough"]["toggles"]
            assert found["south"]["tenants"]["harborough"]["toggles"] == {}
            assert found["north"]["queues"]["hdc-revenues"]["waiting"] == 6
            assert found["south"]["queues"]["hdc-revenues"]["waiting"] == 1
    finally:
        killed = await stop_processes(processes)
        await redis.aclose()
    assert killed == []
    for name in ("north", "south"):
        errors = [
            line for line in (tmp_path / f"{name}.log").read_text().splitlines() if '"level": "error"' in line
        ]
        assert errors == [], errors
    assert os.environ.get("CALLROUTER_REDIS_KEY_TAG") is None  # the commands' settings did not leak
