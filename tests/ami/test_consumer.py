"""The AMI consumer end to end: fake AMI over TCP -> panoramisk -> Redis state."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from callrouter.ops import ami_figures
from emulator.ami import FakeAmi
from routing.ami.consumer import AmiConsumer, Backoff
from routing.ami.settings import AmiSettings
from routing.core.live import LiveState
from routing.live.events import CallerJoined, QueueEvent
from routing.live.lease import WriterLease
from routing.live.store import QueueStateStore
from routing.redis_keys import RedisKeys
from tests.ami.helpers import expected_counts, wait_until
from tests.support.redis_server import RedisServer

SECRET = "consumer-test-secret"
Q = "council-revenues"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    async with FakeAmi("callrouter", SECRET, withdraw_delay_s=0.05) as server:
        server.add_member(Q, "PJSIP/agent1", "Agent One", membership="static", send=False)
        yield server


def fast_settings(fake: FakeAmi, **overrides: float | int | str) -> AmiSettings:
    """Short intervals, so a test sees a keepalive or a takeover in a second or two; the deadlines
    hold on a loaded two-core machine, where the fake (on the same loop) can be late to answer a
    Ping by a few hundred milliseconds and a lease renewal late as much: with a 0.2 s Pong
    deadline and a 0.6 s lease a busy moment cost the consumer its connection or its lease, and
    the events meanwhile (tests failed so beside busy loops)."""
    base: dict[str, float | int | str] = {
        "port": fake.port,
        "secret": SECRET,
        "ping_interval_s": 0.1,
        "pong_deadline_s": 1.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
        "lease_ttl_s": 3.0,
        "connect_timeout_s": 1,
        "login_timeout_s": 1,
        "action_timeout_s": 2,
    }
    return AmiSettings(**{**base, **overrides})  # type: ignore[arg-type]


Factory = Callable[..., AmiConsumer]


@pytest.fixture
async def consumers(redis: Redis, keys: RedisKeys, fake: FakeAmi) -> AsyncIterator[Factory]:
    made: list[AmiConsumer] = []

    def make(
        holder: str = "a",
        on_event: Callable[[QueueEvent], None] | None = None,
        on_message: Callable[[Mapping[str, str], float], None] | None = None,
        **overrides: float,
    ) -> AmiConsumer:
        settings = fast_settings(fake, **overrides)
        lease = WriterLease(redis, holder, settings.lease_ttl_s, keys)
        store = QueueStateStore(redis, holder, keys)
        consumer = AmiConsumer(settings, store, lease, on_event=on_event, on_message=on_message)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        await consumer.stop()


async def settled(consumer: AmiConsumer, fake: FakeAmi) -> dict[str, tuple[int, int, int]]:
    """Wait until the store agrees with the fake's model; returns the counts."""
    expected: dict[str, tuple[int, int, int]] = {}
    got: dict[str, tuple[int, int, int]] = {}

    async def read() -> None:
        snaps = await consumer.store.snapshots(datetime.now(UTC))
        got.clear()
        got.update({q: (s.waiting, s.logged_in, s.available) for q, s in snaps.items()})

    deadline = time.monotonic() + 15  # at once when idle; a loaded machine takes its time
    while time.monotonic() < deadline:
        expected = expected_counts(fake.model)
        await read()
        if got == expected:
            return got
        await wait_until(lambda: True)
    raise AssertionError(f"store {got} != model {expected}; {consumer.stats}")


async def test_live_events_reach_the_store(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers()
    await consumer.start()
    await wait_until(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0)
    caller = fake.caller_joins(Q).channel
    assert caller is not None
    assert await settled(consumer, fake) == {Q: (1, 1, 1)}
    fake.answer(caller.uniqueid, "PJSIP/agent1")
    assert await settled(consumer, fake) == {Q: (0, 1, 0)}
    fake.pause_member("PJSIP/agent1", True, "lunch")
    fake.complete(caller.uniqueid)
    assert await settled(consumer, fake) == {Q: (0, 1, 0)}
    fake.pause_member("PJSIP/agent1", False)
    assert await settled(consumer, fake) == {Q: (0, 1, 1)}


async def test_events_are_counted_by_type_with_their_age_and_lag_for_the_metrics(
    consumers: Factory, fake: FakeAmi
) -> None:
    """What ``/metrics`` reads: every event but DTMF and reconcile replies, by type, as the tap
    sees them; the last event's age and the last batch's lag."""
    tapped: list[str] = []
    consumer = consumers(on_message=lambda headers, _at: tapped.append(headers["Event"]))
    await consumer.start()
    await wait_until(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0)
    caller = fake.caller_joins(Q).channel
    assert caller is not None
    fake.dtmf(caller.uniqueid, "12")
    fake.answer(caller.uniqueid, "PJSIP/agent1")
    fake.complete(caller.uniqueid)
    await wait_until(lambda: "Hangup" in tapped and consumer.apply_lag_s is not None)
    assert await settled(consumer, fake) == {Q: (0, 1, 1)}
    figures = ami_figures(consumer)
    assert figures.events == dict(Counter(tapped))
    assert figures.events["QueueCallerJoin"] == 1
    assert not any(kind.startswith("DTMF") for kind in figures.events)
    assert figures.last_event_age_s is not None
    assert 0 <= figures.last_event_age_s < 5
    assert figures.apply_lag_s is not None
    assert 0 <= figures.apply_lag_s < 5
    assert figures.writer


async def test_the_message_tap_sees_every_event_but_dtmf_and_reconcile_replies(
    consumers: Factory, fake: FakeAmi
) -> None:
    """``on_message`` gets each event's headers as sent, with its receive time; a tap that
    raises costs nothing to the live state."""
    tapped: list[tuple[dict[str, str], float]] = []

    def tap(headers: Mapping[str, str], received_at: float) -> None:
        tapped.append((dict(headers), received_at))
        if headers.get("Event") == "QueueCallerLeave":
            raise RuntimeError("a broken listener")

    consumer = consumers(on_message=tap)
    await consumer.start()
    await wait_until(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0)
    before = time.time()
    caller = fake.caller_joins(Q).channel
    assert caller is not None
    fake.dtmf(caller.uniqueid, "12")
    fake.answer(caller.uniqueid, "PJSIP/agent1")
    fake.complete(caller.uniqueid)
    await wait_until(lambda: any(h.get("Event") == "Hangup" for h, _ in tapped))
    names = [
        h["Event"] for h, _ in tapped if h.get("Uniqueid") == caller.uniqueid or h.get("Event") == "Hangup"
    ]
    assert names[:3] == ["QueueCallerJoin", "AgentCalled", "QueueCallerLeave"]
    assert "Hangup" in names
    assert not any(h["Event"].startswith("DTMF") or "ActionID" in h for h, _ in tapped)
    assert all(t >= before for h, t in tapped if h.get("Uniqueid") == caller.uniqueid)
    assert consumer.stats.tap_errors == 1
    assert await settled(consumer, fake) == {Q: (0, 1, 1)}


async def test_dtmf_is_never_stored(consumers: Factory, fake: FakeAmi, redis: Redis, keys: RedisKeys) -> None:
    # The Pong waits behind 6,400 DTMF events: on a loaded machine 0.2 s is too short for it.
    consumer = consumers(ping_interval_s=0.5, pong_deadline_s=5)
    await consumer.start()
    await wait_until(lambda: consumer.stats.reconciles_applied > 0)
    marker = fake.caller_joins(Q, name="Keypad Marker", number="07700900999").channel
    assert marker is not None
    with fake.burst():
        for _ in range(200):
            fake.dtmf(marker.uniqueid, "4929123456781234")
        fake.caller_joins(Q)
    await settled(consumer, fake)  # a periodic reconcile can agree before the burst is read
    await wait_until(lambda: consumer.stats.dtmf_dropped >= 200 * 16 * 2, timeout_s=15)
    assert consumer.stats.dtmf_dropped == 200 * 16 * 2
    dump = []
    async for key in redis.scan_iter(match=f"{keys.prefix}*"):
        dump.append(key)
        kind = await redis.type(key)
        if kind == "hash":
            dump += [f"{k}={v}" for k, v in (await redis.hgetall(key)).items()]
        elif kind == "zset":
            dump += await redis.zrange(key, 0, -1)
        elif kind == "string":
            dump.append(await redis.get(key))
    text = "\n".join(str(x) for x in dump)
    assert marker.uniqueid in text  # the caller is there...
    assert "DTMF" not in text  # ...but no key press, digit string or DTMF event
    assert "4929123456781234" not in text
    assert "Digit" not in text


async def test_a_split_utf8_name_arrives_intact(
    consumers: Factory, fake: FakeAmi, redis: Redis, keys: RedisKeys
) -> None:
    seen: list[QueueEvent] = []
    consumer = consumers(on_event=seen.append)
    await consumer.start()
    await wait_until(lambda: consumer.stats.reconciles_applied > 0)
    emission = fake.caller_joins(Q, name="Zoë Brontë", send=False)
    await fake.send_split(emission.data, at=emission.data.index("ë".encode()) + 1)
    member = fake.add_member(Q, "PJSIP/zoe", "Zoë Agent", send=False)
    await fake.send_split(member.data, at=member.data.index("ë".encode()) + 1)
    await wait_until(lambda: any(isinstance(e, CallerJoined) for e in seen))
    joined = next(e for e in seen if isinstance(e, CallerJoined))
    assert joined.caller_id_name == "Zoë Brontë"
    await settled(consumer, fake)
    assert '"name":"Zoë Agent"' in (await redis.hget(keys.queue_members(Q), "PJSIP/zoe") or "")


async def test_keepalive_detects_a_silent_server_and_reconnects(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers()
    await consumer.start()
    await wait_until(lambda: consumer.stats.connects == 1 and consumer.stats.reconciles_applied > 0)
    fake.go_silent()
    await wait_until(lambda: consumer.stats.keepalive_failures >= 1, timeout_s=5)  # 1.1 s idle
    fake.caller_joins(Q)  # happens while we are deaf
    fake.resume()
    await wait_until(lambda: consumer.stats.connects >= 2, timeout_s=5)
    assert await settled(consumer, fake) == {Q: (1, 1, 1)}


async def test_reconnect_and_reconcile_after_a_drop_mid_peak(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers()
    await consumer.start()
    await wait_until(lambda: consumer.stats.reconciles_applied > 0)
    await fake.peak([Q, "council-housing"], calls=150, seed=3)
    fake.drop_connections()
    await fake.peak([Q, "council-housing"], calls=150, seed=4)  # nobody listening
    await wait_until(lambda: consumer.stats.connects >= 2, timeout_s=10)
    counts = await settled(consumer, fake)
    assert counts == expected_counts(fake.model)
    assert counts[Q][0] + counts["council-housing"][0] > 20


async def test_one_writer_and_takeover_after_a_crash(
    consumers: Factory, fake: FakeAmi, redis: Redis, keys: RedisKeys
) -> None:
    # the takeover waits for the first's lease to expire (1.5 s); the second, once writer,
    # renews every second (a 3 s lease): a loaded machine's pauses do not cost it the lease
    ttl = 1.5
    first, second = consumers("a", lease_ttl_s=ttl), consumers("b")
    await first.start()
    await wait_until(lambda: first.is_writer)
    await second.start()
    await wait_until(lambda: second.connected)
    await fake.peak([Q], calls=50, seed=5)
    await settled(first, fake)
    assert not second.is_writer
    assert second.stats.events_applied == 0
    assert second.stats.events_discarded_standby > 0
    assert await redis.hget(keys.ami_status(), "writer") == "a"

    await first.stop(release_lease=False)  # a crash: the lease must expire
    crashed_at = time.monotonic()
    await fake.peak([Q], calls=50, seed=6)
    waited = await wait_until(lambda: second.is_writer, timeout_s=10)
    assert time.monotonic() - crashed_at <= ttl + second.lease.renew_interval_s + 1.0
    assert waited > 0
    assert await settled(second, fake) == expected_counts(fake.model)
    assert await redis.hget(keys.ami_status(), "writer") == "b"
    assert second.stats.takeovers == 1


async def test_a_writer_cut_off_from_redis_briefly_writes_again_when_the_lease_is_still_its(
    consumers: Factory, fake: FakeAmi, redis: Redis, keys: RedisKeys, redis_server: RedisServer
) -> None:
    """As in a Redis failover: the lease renewal fails (here Redis refuses new connections for a
    moment), so the writer stops writing; the next renewal finds the lease still its own and it
    writes again, without waiting for the lease to expire and be taken anew."""
    consumer = consumers("a", lease_ttl_s=3.0)
    await consumer.start()
    await wait_until(lambda: consumer.is_writer and consumer.stats.reconciles_applied > 0)
    admin = Redis.from_url(redis_server.url, single_connection_client=True)
    try:
        await admin.config_set("requirepass", "cut-off")
        await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await wait_until(lambda: not consumer.is_writer, timeout_s=5)
    finally:
        await admin.config_set("requirepass", "")
        await admin.aclose()
    waited = await wait_until(lambda: consumer.is_writer, timeout_s=5)
    assert waited < 2.0  # a renewal or two (every second), not the lease's expiry and a takeover
    assert await redis.get(keys.ami_writer_lease()) == "a"
    await fake.peak([Q], calls=20, seed=7)
    assert await settled(consumer, fake) == expected_counts(fake.model)


async def test_clean_stop_hands_over_at_once(consumers: Factory, fake: FakeAmi) -> None:
    first, second = consumers("a"), consumers("b", lease_ttl_s=30)
    first.lease.ttl_ms = second.lease.ttl_ms = 30_000
    await first.start()
    await wait_until(lambda: first.is_writer)
    await second.start()
    await first.stop()
    await wait_until(lambda: second.is_writer, timeout_s=11)
    fake.caller_joins(Q)
    assert await settled(second, fake) == {Q: (1, 1, 1)}


async def test_state_goes_stale_when_the_writer_stops(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers()
    await consumer.start()
    fake.caller_joins(Q)
    await settled(consumer, fake)
    await consumer.stop()
    stopped = datetime.now(UTC)
    snaps = await consumer.store.snapshots(stopped)
    observed = snaps[Q].observed_at
    assert (stopped - observed).total_seconds() < 1
    later = datetime.fromtimestamp(stopped.timestamp() + 31, UTC)
    assert (await consumer.store.snapshots(later))[Q].observed_at == observed
    assert LiveState(queues=snaps, max_age_s=30).snapshot(Q, later) is None


async def test_queue_overflow_drops_are_counted_and_repaired(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers(queue_maxsize=20, batch_max=5)
    await consumer.start()
    await wait_until(lambda: consumer.stats.reconciles_applied > 0)
    with fake.burst():
        for _ in range(300):
            fake.caller_joins(Q)
    await wait_until(lambda: consumer.stats.queue_full_dropped > 0)
    assert consumer.stats.read_pauses >= 1
    assert await settled(consumer, fake) == {Q: (300, 1, 1)}


async def test_a_burst_pauses_reading_instead_of_dropping(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers(queue_maxsize=2000, batch_max=50)
    await consumer.start()
    await wait_until(lambda: consumer.stats.reconciles_applied > 0)
    for _ in range(20):
        with fake.burst():
            for _ in range(150):
                fake.caller_joins(Q)
        await fake.send_split(b"", 0, pause_s=0)
    assert await settled(consumer, fake) == {Q: (3000, 1, 1)}
    assert consumer.stats.read_pauses >= 1
    assert consumer.stats.queue_full_dropped == 0


async def test_queue_withdraw_caller(consumers: Factory, fake: FakeAmi) -> None:
    consumer = consumers()
    await consumer.start()
    await wait_until(lambda: consumer.connected)
    caller = fake.caller_joins(Q).channel
    assert caller is not None
    first = await consumer.queue_withdraw_caller(Q, caller.name, "to-ivr harborough")
    again = await consumer.queue_withdraw_caller(Q, caller.name)
    nobody = await consumer.queue_withdraw_caller(Q, "PJSIP/nobody-00000000")
    no_queue = await consumer.queue_withdraw_caller("no-such-queue", caller.name)
    assert (first.requested, first.message) == (True, "Withdraw requested successfully")
    assert [r.reason for r in (again, nobody, no_queue)] == [
        "Already requested",
        "No such caller",
        "No such queue",
    ]
    assert not again.requested
    await wait_until(lambda: not fake.model.queues[Q].waiting)
    assert await settled(consumer, fake) == {Q: (0, 1, 1)}


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
