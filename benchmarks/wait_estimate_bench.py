"""Benchmark: how wrong is the expected-wait estimate? Estimate against actual wait, per caller.

Run: ``.venv/bin/python -m benchmarks.wait_estimate_bench [--hours H] [--seed S]``.

A centre is simulated in virtual time on the emulator's queue model (:mod:`emulator.ami_model`,
the state behind the fake AMI server): callers arrive at random (Poisson), advisers answer the
longest waiter as soon as they are free, each call lasts a handle time drawn from a known
distribution. Every AMI message the model emits goes through the controller's own parser
(:func:`routing.live.events.to_queue_event`): the ``AgentComplete`` TalkTimes are the recent
handle times the AMI writer keeps (the newest :data:`routing.live.store.HANDLE_TIMES_KEPT`).
When a caller joins, the estimate :func:`routing.core.wait.estimate_wait` is taken from what
live state holds then (waiting, logged in, available); when they are answered, the actual wait
is known. Side by side, the baseline is Asterisk's own ``announce-holdtime`` figure: app_queue's
exponential average of past hold times (``recalc_holdtime``: 3/4 old + 1/4 new).

Reported per scenario: callers with a known estimate and the median and p90 absolute error of
the expected wait (seconds) over all of them and over those who waited at all (a caller who
finds an adviser free is told 0 and waits 0), the baseline's over the latter, and for the words
a caller hears (``wait_words``, figures capped at 10 minutes): how often they came true (waited
no longer than the minutes said, or more than 10 minutes when told so), and how often a caller
was told "more than 10 minutes".
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.ami_model import QueueModel
from emulator.ami_wire import Message, headers_dict
from routing.core.wait import estimate_wait, new_caller_inputs, wait_words
from routing.live.events import AgentComplete, AgentConnect, to_queue_event
from routing.live.store import HANDLE_TIMES_KEPT

QUEUE = "bench-queue"
MAX_FIGURE_S = 600


@dataclass(frozen=True)
class Scenario:
    name: str
    advisers: int
    handle: Callable[[random.Random], float]  # one call's handle time (s)
    rate: Callable[[float], float]  # arrivals per second at virtual time t (s)
    mean_handle_s: float


def exponential(mean: float) -> Callable[[random.Random], float]:
    return lambda rng: rng.expovariate(1 / mean)


def lognormal(mean: float, sigma: float) -> Callable[[random.Random], float]:
    mu = math.log(mean) - sigma**2 / 2
    return lambda rng: rng.lognormvariate(mu, sigma)


def steady(load: float, advisers: int, mean: float) -> Callable[[float], float]:
    return lambda _t: load * advisers / mean


def peak(base: float, high: float, advisers: int, mean: float) -> Callable[[float], float]:
    """``base`` load, ``high`` from the 2nd to the 3rd hour of each four (a Monday-morning peak)."""
    return lambda t: (high if 3600 <= t % 14400 < 7200 else base) * advisers / mean


SCENARIOS = [
    Scenario("steady 85%, 4 advisers, exp 240 s", 4, exponential(240), steady(0.85, 4, 240), 240),
    Scenario("peak 70%->115%, 6 advisers, exp 300 s", 6, exponential(300), peak(0.7, 1.15, 6, 300), 300),
    Scenario("steady 90%, 3 advisers, lognormal 360 s", 3, lognormal(360, 0.8), steady(0.9, 3, 360), 360),
]


@dataclass
class Result:
    errors: list[float] = field(default_factory=list)  # |expected - actual|, every caller
    waited: list[float] = field(default_factory=list)  # the same, callers who waited at all
    baseline_waited: list[float] = field(default_factory=list)  # Asterisk's figure, callers who waited
    told: int = 0  # callers told a figure or "more than"
    true_words: int = 0  # ... and it came true: waited at most that, or more than 10 minutes
    more_than: int = 0  # told "more than 10 minutes"
    unknown: int = 0  # no estimate yet (fewer than MIN_SAMPLES handle times)


class Centre:
    """The simulation: the emulator's queue model driven in virtual time."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.s, self.rng = scenario, random.Random(seed)
        self.model = QueueModel()
        self.free: list[str] = []
        for n in range(scenario.advisers):
            iface = f"PJSIP/adviser-{n}"
            self.model.add_member(QUEUE, iface, f"Adviser {n}", 0.0)
            self.free.append(iface)
        self.handle_times: deque[float] = deque(maxlen=HANDLE_TIMES_KEPT)
        self.holdtime = 0.0  # app_queue's q->holdtime
        self.completed = 0
        # uid -> (joined at, expected, what was said (s; -1: "more than"), Asterisk's figure then)
        self.joined: dict[str, tuple[float, float | None, float | None, float]] = {}
        self.result = Result()
        self.timeline: list[tuple[float, int, str, str]] = []  # (t, seq, kind, uid/iface)
        self.seq = 0

    def _at(self, t: float, kind: str, what: str) -> None:
        self.seq += 1
        heapq.heappush(self.timeline, (t, self.seq, kind, what))

    def _feed(self, messages: list[Message], t: float) -> None:
        """What the AMI writer and Asterisk's own average learn from the emitted messages."""
        for message in messages:
            event = to_queue_event(headers_dict(message), t)
            if isinstance(event, AgentComplete):
                self.handle_times.append(float(event.talk_time_s))
            elif isinstance(event, AgentConnect):
                new = event.hold_time_s
                self.holdtime = new if self.completed == 0 else (self.holdtime * 3 + new) // 4
                self.completed += 1

    def _arrive(self, t: float) -> None:
        q = self.model.queue(QUEUE)
        estimate = estimate_wait(
            new_caller_inputs(len(q.waiting), 0, self.s.advisers, len(self.free), list(self.handle_times))
        )
        channel = self.model.new_channel("PJSIP/sipp", "Caller", "01632960123")
        self._feed(self.model.join(QUEUE, channel, t), t)
        said = wait_words(estimate, MAX_FIGURE_S)
        figure = (
            None if said.said == "nothing" else (math.inf if said.said == "more_than" else said.minutes * 60)
        )
        self.joined[channel.uniqueid] = (t, estimate.expected_s, figure, self.holdtime)
        if said.said == "more_than":
            self.result.more_than += 1

    def _answer_waiting(self, t: float) -> None:
        q = self.model.queue(QUEUE)
        while self.free and q.waiting:
            caller, iface = q.waiting[0], self.free.pop(0)
            uid = caller.channel.uniqueid
            agent = self.model.new_channel(iface, "Adviser", "2101")
            self._feed(self.model.answer(uid, iface, agent, t), t)
            self._record(uid, t)
            self._at(t + self.s.handle(self.rng), "done", uid)

    def _record(self, uid: str, t: float) -> None:
        joined, expected, figure, baseline = self.joined.pop(uid)
        actual = t - joined
        if expected is None:
            self.result.unknown += 1
            return
        r = self.result
        r.errors.append(abs(expected - actual))
        if actual > 0:
            r.waited.append(abs(expected - actual))
            r.baseline_waited.append(abs(baseline - actual))
        if figure is not None:
            r.told += 1
            r.true_words += actual > MAX_FIGURE_S if figure < 0 else actual <= figure

    def run(self, hours: float) -> Result:
        end = hours * 3600
        t = 0.0
        while t < end:
            t += self.rng.expovariate(self.s.rate(t))
            self._at(t, "arrive", "")
        while self.timeline:
            t, _, kind, what = heapq.heappop(self.timeline)
            if kind == "arrive":
                self._arrive(t)
            else:
                caller = self.model.connected[what]
                self._feed(self.model.complete(what, t), t)
                self.free.append(caller.interface)
            self._answer_waiting(t)
        return self.result


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=40.0, help="virtual hours per scenario")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    print(f"{args.hours:g} virtual hours per scenario, seed {args.seed}; errors in seconds")
    print(
        f"{'scenario':40} {'callers':>7} {'all p50':>7} {'all p90':>7} {'waited':>6} {'p50':>5} {'p90':>5} "
        f"{'AQ p50':>6} {'AQ p90':>6} {'words true':>10} {'>10 min':>7}"
    )
    for scenario in SCENARIOS:
        r = Centre(scenario, args.seed).run(args.hours)
        w, b, med = r.waited, r.baseline_waited, statistics.median
        print(
            f"{scenario.name:40} {len(r.errors):7d} {med(r.errors):7.0f} {p90(r.errors):7.0f} "
            f"{len(w):6d} {med(w):5.0f} {p90(w):5.0f} {med(b):6.0f} {p90(b):6.0f} "
            f"{r.true_words / r.told:10.1%} {r.more_than / r.told:7.1%}"
        )


if __name__ == "__main__":
    main()
