"""Queue ids and process ids the way a long-running Postfix hands them out."""

from __future__ import annotations

import random

from detector.simulate.naming import b51, b52

MAX_IDLE_US = 100_000_000  # max_idle: an idle daemon process exits after 100 s
PID_MAX = 32_768  # Linux default in 2016: pids wrap around


class QueueIds:
    """Unique queue ids; short ones are usec + inode hex, long ones base-52 time + inode."""

    def __init__(self, rng: random.Random, long: bool = False, inodes: int = 0xEFFFF) -> None:
        # inodes: how many queue files' inode numbers the ids draw from. A busy queue
        # reuses a few thousand, so a short id comes back days later (never while its
        # message is queued: an id is unique within the day rendered here)
        self.rng, self.long, self.inodes = rng, long, inodes
        self.used: set[str] = set()

    def new(self, t_us: int) -> str:
        sec, usec = divmod(t_us, 1_000_000)
        rand = self.rng.random
        while True:
            if self.long:
                qid = f"{b52(sec, 6)}{b52(usec, 4)}z{b51(51**3 + int(rand() * 6_632_550))}"
            else:  # 5 hex digits of microseconds, then the queue file's inode number
                qid = f"{usec:05X}{0x10000 + int(rand() * self.inodes):05X}"
            if qid not in self.used:
                self.used.add(qid)
                return qid


class IdsBySecond:
    """Ids handed out, kept by the second they name. Messages are rendered in time order
    and none reaches back before its own time less a lead, so once the renderer is past a
    second its ids can be forgotten: memory holds the seconds still ahead (retries), not
    the whole day."""

    PRUNE_EVERY = 4096  # messages between two prunings

    def __init__(self) -> None:
        self.by_second: dict[int, set[str]] = {}
        self.calls = 0

    def of(self, sec: int) -> set[str]:
        used = self.by_second.get(sec)
        if used is None:
            used = self.by_second[sec] = set()
        return used

    def passing(self, t_us: int) -> None:
        """The renderer reached ``t_us``: no id will be asked for an earlier second."""
        self.calls += 1
        if self.calls % self.PRUNE_EVERY:
            return
        cut = t_us // 1_000_000
        for sec in [s for s in self.by_second if s < cut]:
            del self.by_second[sec]


class Pids:
    """Per host and service pools of daemon processes that come and go over the day.

    A process serves one session or delivery request at a time (``until``); idle ones
    are reused, and exit after ``max_idle``, so pids churn like on a real server.
    """

    def __init__(self, rng: random.Random, first: int = 2000) -> None:
        self.rng = rng
        self.next = first
        self.pools: dict[tuple[str, str], list[list[int]]] = {}
        self.pruned: dict[tuple[str, str], int] = {}

    def spawn(self) -> int:
        self.next += 1 + int(self.rng.random() * 25)  # other processes take pids in between
        if self.next >= PID_MAX:
            self.next = 300 + self.next % 1000
        return self.next

    def get(self, host: str, service: str, t_us: int, until: int = 0,
            reuse: float = 0.85, limit: int = 100) -> int:
        """A pid for ``service`` busy from t to ``until``: an idle live process or a new one."""
        key = (host, service)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = []
        if t_us - self.pruned.get(key, 0) > 20_000_000:  # idle processes exit now and then
            self.pruned[key] = t_us
            pool[:] = [p for p in pool if p[1] + MAX_IDLE_US >= t_us]
        if until < t_us:
            until = t_us
        rand = self.rng.random
        n = len(pool)
        if n and (n >= limit or rand() < reuse):
            # look at a few processes (qmgr picks any idle one); requests rendered out of
            # time order (retries) may hold one in the future: >1 min ahead counts as idle
            for _ in range(4):
                q = pool[int(rand() * n)]
                if q[1] <= t_us or q[1] > t_us + 60_000_000:
                    q[1] = until
                    return q[0]
        if n >= limit:  # all busy: the one free soonest takes the request
            p = min(pool, key=lambda q: q[1])
            p[1] = max(p[1], until)
            return p[0]
        pool.append([self.spawn(), until])
        return self.next
