"""`callrouter simulate-crm`: the fake CRM people try callrouter with, as a real process on a free
loopback port: it checks the signature, keeps each version once and prints it, number masked."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta

from records.sinks import WebhookSink
from records.stream import Envelope
from tests.records.conftest import CENTRE, SECRET, T0, TENANT, webhook_config
from tests.records.factory import record
from tests.support.processes import kill_tree
from tests.support.redis_server import free_port


async def test_simulate_crm_prints_each_version_once_masked_and_refuses_a_bad_signature() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "callrouter.cli", "simulate-crm", "--port", str(port),
            "--secret-env", "DEMO_SECRET", "--lifetime-s", "60"]  # fmt: skip
    env = {**os.environ, "DEMO_SECRET": SECRET.decode()}
    crm = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/contacts"
    made = record("1795100000.7", T0, caller="01632960123")
    updated = T0 + timedelta(minutes=11)
    envelope = Envelope(made.id, 1, TENANT, CENTRE, T0, updated, made.model_dump(mode="json"))
    good = WebhookSink(f"{TENANT}/crm", webhook_config(url), SECRET)
    forged = WebhookSink(f"{TENANT}/crm", webhook_config(url), b"not-the-secret")
    try:
        deadline = time.monotonic() + 30
        while (first := await good.send(envelope)).kind != "delivered":  # until it listens
            assert time.monotonic() < deadline, first
            await asyncio.sleep(0.1)
        assert (await good.send(envelope)).kind == "delivered"  # a repeat: answered, kept once
        refused = await forged.send(envelope)
        assert (refused.kind, refused.status) == ("refused", 401)
    finally:
        await good.close()
        await forged.close()
        crm.send_signal(signal.SIGTERM)
        try:
            raw, _ = await asyncio.wait_for(crm.communicate(), timeout=20)
        except TimeoutError:
            kill_tree(crm.pid)
            await crm.wait()
            raise
    out = raw.decode()
    assert crm.returncode == 0
    received = [line for line in out.splitlines() if "1795100000.7:1" in line]
    assert len(received) == 1
    assert "harborough" in received[0]
    assert "caller ********123" in received[0]
    assert "01632960123" not in out
    assert "1 accepted, 1 repeats, 1 bad signatures" in out
