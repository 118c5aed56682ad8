"""A chaos run: the replicated platform under users and injected faults, then invariants and a table.

`python -m tests.chaos.run --faults N` (`make chaos CHAOS_FAULTS=N`): starts tests.chaos.platform, lets
`--users` users chat through both gateways (tests.chaos.clients) and, at random moments, injects N faults:
SIGKILL of a random replica of any service (started again at once), SIGKILL of the broker, of Redis (its data
lost), a restart of PostgreSQL, and SIGSTOP of a consumer past its session timeout (a rebalance) then SIGCONT.
When the faults are done it waits for the platform to settle and checks, from the databases, the broker and
what the users saw:

- every accepted turn ended in exactly one outcome (complete, cancelled or failed): none lost, stuck or
  answered twice, and none reported failed to its user that later completed;
- every reply reached its user gapless and without repeats;
- every spin ended (ready or failed);
- no outbox row was left unpublished, and no message went to a dead-letter topic;
- dossier versions only grew (1, 2, 3, … per project).

It prints the table and exits 1 if any invariant failed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from orrery_shared.events import all_topics
from tests.chaos.clients import Observations, User
from tests.chaos.platform import ChaosPlatform

ADMIN_URL = "postgresql://postgres@127.0.0.1:55432/orrery"
SESSION_TIMEOUT_S = 6.0  # ORRERY_KAFKA_SESSION_TIMEOUT_MS
KINDS = {  # fault kind: weight
    "kill chat": 24,
    "kill gateway": 20,
    "kill character-gen": 14,
    "kill dossier": 14,
    "kill auth": 8,
    "restart kafka": 6,
    "restart redis": 4,
    "restart postgres": 4,
    "rebalance": 6,
}


@dataclass
class Fault:
    kind: str
    target: str
    at: float
    recovered_s: list[float] = field(default_factory=list)


@dataclass
class Faults:
    platform: ChaosPlatform
    rng: random.Random
    kinds: dict[str, int]
    done: list[Fault] = field(default_factory=list)

    def inject(self, kind: str) -> Fault:
        p = self.platform
        at = time.time()
        if kind.startswith("kill "):
            replica = self.rng.choice(p.replicas[kind.removeprefix("kill ")])
            replica.kill()
            replica.start()
            return Fault(kind, replica.name, at)
        if kind == "restart kafka":
            p.restart_kafka(down_s=self.rng.uniform(0.5, 3))
            return Fault(kind, "kafka", at)
        if kind == "restart redis":
            p.restart_redis(down_s=self.rng.uniform(0.2, 2))
            return Fault(kind, "redis", at)
        if kind == "restart postgres":
            p.restart_postgres(down_s=self.rng.uniform(0.2, 2))
            return Fault(kind, "postgres", at)
        replica = self.rng.choice([*p.replicas["chat"], *p.replicas["dossier"], *p.replicas["character-gen"]])
        replica.pause()
        time.sleep(SESSION_TIMEOUT_S + self.rng.uniform(1, 3))
        replica.resume()
        return Fault(kind, replica.name, at)

    def plan(self, count: int) -> list[str]:
        """`count` faults, every kind at least once when there are enough, the rest drawn by weight."""
        kinds = list(self.kinds)
        planned = kinds[:count] if count < len(kinds) else list(kinds)
        planned += self.rng.choices(kinds, weights=[self.kinds[k] for k in kinds], k=max(0, count - len(planned)))
        self.rng.shuffle(planned)
        return planned

    async def run(self, count: int, gap_s: tuple[float, float]) -> None:
        for kind in self.plan(count):
            await asyncio.sleep(self.rng.uniform(*gap_s))
            fault = await asyncio.to_thread(self.inject, kind)
            self.done.append(fault)
            print(f"  fault {len(self.done)}/{count}: {fault.kind} ({fault.target})", flush=True)


# --- after the run ----------------------------------------------------------------------------------------------


def query(sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())


async def settle(seen: Observations, deadline_s: float) -> None:
    """Wait until no accepted turn is still processing and every outbox is empty (or the deadline passes)."""
    turn_ids = list(seen.turns)
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        try:
            busy = query(
                "SELECT count(*) FROM chat.turns WHERE turn_id = ANY(%s::uuid[]) AND status = 'processing'", turn_ids
            )[0][0]
            waiting = sum(int(query(f"SELECT count(*) FROM {s}.outbox")[0][0]) for s in SCHEMAS)
        except psycopg.Error:
            busy = waiting = 1
        if not busy and not waiting:
            return
        await asyncio.sleep(2)


SCHEMAS = ("auth", "characters", "chat", "dossier")


async def dead_letters(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(spec.name, p)
            for spec in all_topics()
            if spec.name.endswith(".dlq")
            for p in range(spec.partitions)
        ]
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


@dataclass
class Verdict:
    rows: list[tuple[str, object]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def count(self, name: str, value: int, must_be_zero: bool = True) -> None:
        self.rows.append((name, value))
        if must_be_zero and value:
            self.violations.append(f"{name}: {value}")


def recovery(faults: list[Fault], seen: Observations) -> None:
    """For every fault, how long each reply in flight at that moment waited for its next frame."""
    for fault in faults:
        for turn in seen.turns.values():
            times = [t for t, _, _ in turn.frames]
            if not times or turn.accepted_at > fault.at or times[-1] <= fault.at:
                continue  # not in flight at the fault
            after = [t for t in times if t > fault.at]
            fault.recovered_s.append(after[0] - fault.at)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def verify(platform: ChaosPlatform, seen: Observations, faults: list[Fault]) -> Verdict:
    verdict = Verdict()
    turn_ids = list(seen.turns)
    rows = query(
        """
        SELECT t.turn_id::text, t.status,
               (SELECT count(*) FROM chat.messages m WHERE m.turn_id = t.turn_id AND m.role = 'assistant'),
               EXISTS (SELECT 1 FROM chat.messages m WHERE m.message_id = t.assistant_message_id)
        FROM chat.turns t WHERE t.turn_id = ANY(%s::uuid[])
        """,
        turn_ids,
    )
    # A continue stores no message of its own (it extends one): its reply is the message the turn names.
    stored = {str(r[0]): (str(r[1]), int(r[2])) for r in rows}
    has_reply = {str(r[0]): bool(r[3]) for r in rows}
    refused = {t.turn_id for t in seen.turns.values() if t.refused_for_its_message and t.turn_id not in stored}
    verdict.count("turns accepted", len(turn_ids), must_be_zero=False)
    modes = Counter(t.mode for t in seen.turns.values())
    verdict.count("  reply / regenerate / continue", 0, must_be_zero=False)
    verdict.rows[-1] = (
        "  reply / regenerate / continue",
        f"{modes['reply']} / {modes['regenerate']} / {modes['continue']}",
    )
    verdict.count("  refused for the message they name", len(refused), must_be_zero=False)
    statuses = Counter(status for status, _ in stored.values())
    verdict.count("  completed / cancelled / failed", 0, must_be_zero=False)
    verdict.rows[-1] = (
        "  completed / cancelled / failed",
        f"{statuses['completed']} / {statuses['cancelled']} / {statuses['failed']}",
    )
    verdict.count(
        "turns lost (accepted, never stored)", sum(1 for t in turn_ids if t not in stored and t not in refused)
    )
    verdict.count("turns stuck (still processing)", statuses["processing"])
    verdict.count("turns answered twice", sum(1 for _, replies in stored.values() if replies > 1))
    verdict.count(
        "turns completed without a stored reply",
        sum(1 for t, (status, _) in stored.items() if status == "completed" and not has_reply[t]),
    )
    verdict.count(
        "turns reported failed, then completed",
        sum(
            1
            for t in seen.turns.values()
            if t.final == "turn.failed" and stored.get(t.turn_id, ("",))[0] == "completed"
        ),
    )
    verdict.count(
        "replies users did not see end (their outcome is above)",
        sum(1 for t in seen.turns.values() if t.final is None),
        must_be_zero=False,
    )
    verdict.count("stream gaps seen by users", sum(t.gaps for t in seen.turns.values()))
    verdict.count("stream repeats seen by users", sum(t.repeats for t in seen.turns.values()))
    spins = list(seen.spins)
    ended = query(
        "SELECT count(*) FROM characters.spin_requests WHERE request_id = ANY(%s::uuid[])",
        spins,
    )[0][0]
    verdict.count("spins", len(spins), must_be_zero=False)
    verdict.count("spins not ended", len(spins) - int(ended))
    verdict.count("outbox rows left", sum(int(query(f"SELECT count(*) FROM {s}.outbox")[0][0]) for s in SCHEMAS))
    verdict.count("dead-lettered messages", await dead_letters(platform.kafka.bootstrap))
    projects = query(
        """
        SELECT v.project_id, array_agg(v.version ORDER BY v.version) FROM dossier.dossier_versions v
        JOIN dossier.dossiers d USING (project_id) WHERE d.user_id = ANY(%s::uuid[]) GROUP BY v.project_id
        """,
        seen.users,
    )
    verdict.count(
        "dossiers whose versions skipped or repeated",
        sum(1 for _, versions in projects if list(versions) != list(range(1, len(versions) + 1))),
    )
    verdict.count("dossiers written", len(projects), must_be_zero=False)
    errors = sorted(seen.errors.items(), key=lambda item: -item[1])
    verdict.rows.append(
        ("errors users saw (code, retryable: count)", ", ".join(f"{c} {r}: {n}" for (c, r), n in errors) or "none")
    )
    for code, message in sorted(seen.examples.items()):
        verdict.rows.append((f"  e.g. {code}", message[:100]))
    verdict.count("socket reconnects", seen.reconnects, must_be_zero=False)
    recovery(faults, seen)
    return verdict


def table(faults: list[Fault], verdict: Verdict, took_s: float) -> str:
    by_kind: dict[str, list[Fault]] = defaultdict(list)
    for fault in faults:
        by_kind[fault.kind].append(fault)
    lines = [
        "",
        f"{'fault':<20} {'trials':>6} {'replies hit':>11} {'next frame p50':>15} {'p99':>8} {'max':>8}",
    ]
    for kind in KINDS:
        hit = [s for f in by_kind.get(kind, []) for s in f.recovered_s]
        lines.append(
            f"{kind:<20} {len(by_kind.get(kind, [])):>6} {len(hit):>11} {pct(hit, 0.5):>14.2f}s {pct(hit, 0.99):>7.2f}s"
            f" {max(hit, default=0):>7.2f}s"
        )
    lines.append("")
    for name, value in verdict.rows:
        lines.append(f"{name:<45} {value}")
    lines.append(f"{'run took':<45} {took_s / 60:.1f} min")
    lines.append(
        "invariants: " + ("all held" if not verdict.violations else "VIOLATED: " + "; ".join(verdict.violations))
    )
    return "\n".join(lines)


async def chaos(
    faults: int,
    users: int,
    seed: int,
    gap_s: tuple[float, float],
    kinds: dict[str, int],
    finish_s: float = 200,
    settle_s: float = 300,
) -> Verdict:
    """Run the platform under `faults` faults; then give users `finish_s` to see their replies in flight end and
    the platform `settle_s` to finish what it holds, and check the invariants."""
    rng = random.Random(seed)
    platform = ChaosPlatform()
    started = time.time()
    print(f"chaos: {faults} faults, {users} users, seed {seed}; starting the platform", flush=True)
    await asyncio.to_thread(platform.start)
    try:
        seen = Observations()
        injector = Faults(platform, rng, kinds)
        warmup_s = 20.0
        until = time.time() + 10**6  # users chat until the faults are done
        people = [User(platform.gateways, seen, random.Random(rng.random())) for _ in range(users)]
        running = [asyncio.create_task(person.run(until)) for person in people]
        await asyncio.sleep(warmup_s)
        await injector.run(faults, gap_s)
        print("chaos: faults done; letting the users finish their replies", flush=True)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await asyncio.gather(*(p.finish_in_flight(time.time() + finish_s) for p in people), return_exceptions=True)
        await settle(seen, settle_s)
        verdict = await verify(platform, seen, injector.done)
        print(table(injector.done, verdict, time.time() - started), flush=True)
        return verdict
    finally:
        await asyncio.to_thread(platform.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=1200)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--gap", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--no-postgres", action="store_true", help="leave the shared PostgreSQL running")
    parser.add_argument("--only", nargs="*", help="inject only these fault kinds")
    args = parser.parse_args(argv)
    kinds = {k: w for k, w in KINDS.items() if not (args.no_postgres and k == "restart postgres")}
    if args.only:
        kinds = {k: w for k, w in kinds.items() if k in args.only}
    verdict = asyncio.run(chaos(args.faults, args.users, args.seed, tuple(args.gap), kinds))
    return 1 if verdict.violations else 0


if __name__ == "__main__":
    sys.exit(main())
