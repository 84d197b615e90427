"""Render the list posts of simulated traffic as Mailman 2.1 or Mailman 3 logs.

A message whose envelope recipients include a list address is a post: the MTA hands it
to Mailman, which sends it on to the members in SMTP transactions of at most
``MAX_RECIPIENTS`` recipients and then logs the post. ``list_posts`` gives that timeline
from the message alone (its seed), so the MTA renderer (``simulate.sendmail`` with
``lists="mailman"``) and this one tell the same story:

* Mailman 2: ``logs/post`` ``post to all.staff from a@x, size=N, message-id=<id>, success``
  and ``logs/smtp`` ``<id> smtp to all.staff for N recips, completed in 3.213 seconds``;
  ``logs/bounce`` ``all.staff: a@x bounce score: 1.0`` for members whose copy bounced;
* Mailman 3: ``smtp.log`` with the same pair (list named by its address, size in bytes)
  and ``mailman.log`` ``ACCEPT: <id>``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from detector.simulate.delivery import Plan, plan_delivery
from detector.simulate.delivery import members as members_of
from detector.simulate.output import write_lines
from detector.simulate.scenario import Message, Site
from detector.simulate.stamps import MONTHS, Stamper
from detector.simulate.stream import in_time_order

MAX_RECIPIENTS = 500  # Mailman 2 SMTP_MAX_RCPTS, Mailman 3 [mta] max_recipients
_SALT = 0x6D6D  # keeps these draws apart from the delivery plan's own


@dataclass
class ListPost:
    """What happens to one list address of a message on its way through Mailman."""

    message: Message
    list_address: str
    handoff_us: int  # the MTA delivered the post to Mailman
    accept_us: int  # Mailman's incoming runner accepted it
    chunks: list[tuple[int, list[str]]]  # (handed back to the MTA, members) per transaction
    done_us: int  # Mailman logged the post

    @property
    def recipients(self) -> int:
        return sum(len(members) for _, members in self.chunks)

    @property
    def last_chunk_us(self) -> int:
        return self.chunks[-1][0] if self.chunks else self.done_us


def list_posts(site: Site, msg: Message, plan: Plan | None = None) -> list[ListPost]:
    """The posts of ``msg``, one per list address among its recipients (none if rejected).

    Deterministic from the message: both the MTA and the Mailman renderer call it.
    """
    lists = [r for r in dict.fromkeys(msg.recipients) if r in site.lists]
    if msg.reject or not lists or msg.source == "bounce":
        return []
    plan = plan or plan_delivery(site, msg)
    rng = random.Random(msg.seed ^ _SALT)
    posts = []
    t = plan.active_us
    for address in lists:
        handoff = t + rng.randint(20_000, 200_000)
        accept = handoff + rng.randint(30_000, 400_000)
        start = accept + rng.randint(300_000, 2_500_000)  # the outgoing runner's next pass
        members = members_of(site, address) or []
        chunks = []
        for i in range(0, len(members), MAX_RECIPIENTS):
            part = members[i:i + MAX_RECIPIENTS]
            start += 60_000 + len(part) * rng.randint(300, 900)  # RCPT TO per member, DATA
            chunks.append((start, part))
        posts.append(ListPost(msg, address, handoff, accept, chunks,
                              start + rng.randint(500, 8_000)))
        t = handoff
    return posts


def bounces_address(list_address: str) -> str:
    """The envelope sender Mailman uses for a list's copies (``LIST-bounces@dom``)."""
    local, _, domain = list_address.partition("@")
    return f"{local}-bounces@{domain}"


class MailmanRenderer:
    """Mailman log renderer for one site; see ``render_mailman`` for the options."""

    def __init__(self, site: Site, *, seed: int = 0, version: int = 2,
                 tz: str | None = None) -> None:
        if version not in (2, 3):
            raise ValueError("version: 2 (Mailman 2.1) or 3")
        self.site, self.version = site, version
        self.rng = random.Random(seed)
        self.stamper = Stamper("rfc3164", tz)
        self.pid = {name: self.rng.randint(900, 30_000) for name in ("in", "out", "bounce")}

    def files(self) -> tuple[str, ...]:
        return ("post", "smtp", "bounce") if self.version == 2 else ("smtp.log", "mailman.log")

    def render(self, messages: Iterable[Message]) -> dict[str, list[str]]:
        """Time-ordered lines per log file."""
        events: dict[str, list[tuple[int, str]]] = {name: [] for name in self.files()}
        for m in in_time_order(messages):
            plan = plan_delivery(self.site, m)
            for post in list_posts(self.site, m, plan):
                self._post(post, plan, events)
        return {name: self._stamp(ev) for name, ev in events.items()}

    def _post(self, post: ListPost, plan: Plan, events: dict[str, list]) -> None:
        m = post.message
        mid = f"<{m.message_id}>" if m.message_id else "n/a"
        seconds = (post.done_us - post.handoff_us) / 1e6 - self.rng.uniform(0.2, 0.5)
        out = self.pid["out"]
        if self.version == 2:
            name = post.list_address.partition("@")[0].lower()  # the list's internal name
            events["smtp"].append((post.done_us, f"({out}) {mid} smtp to {name} for "
                                                 f"{post.recipients} recips, completed in "
                                                 f"{max(seconds, 0.05):.3f} seconds"))
            events["post"].append((post.done_us, f"({out}) post to {name} from {m.sender}, "
                                                 f"size={m.size}, message-id={mid}, success"))
            members = set(members_of(self.site, post.list_address) or ())
            for t, rcpt, orig, code, _ in plan.rows:
                if code == "bounced" and orig == post.list_address and rcpt in members:
                    when = post.done_us + (t - plan.active_us) + self.rng.randint(5, 90) * 10**6
                    events["bounce"].append((when, f"({self.pid['bounce']}) {name}: {rcpt} "
                                                   "bounce score: 1.0"))
            return
        address = post.list_address
        events["mailman.log"].append((post.accept_us, f"({self.pid['in']}) ACCEPT: {mid}"))
        events["smtp.log"].append((post.done_us, f"({out}) {mid} smtp to {address} for "
                                                 f"{post.recipients} recips, completed in "
                                                 f"{max(seconds, 0.05)!r} seconds"))
        events["smtp.log"].append((post.done_us, f"({out}) {mid} post to {address} from "
                                                 f"{m.sender}, {m.size} bytes"))

    def _stamp(self, events: list[tuple[int, str]]) -> list[str]:
        """``Nov 14 10:02:11 2016 (pid) text``: local time, day zero-padded, then the year."""
        events.sort(key=lambda e: e[0])
        out = []
        for t, text in events:
            y, mo, d, h, mi, s, _ = self.stamper.local_parts(t // 1_000_000)
            out.append(f"{MONTHS[mo - 1]} {d:02d} {h:02d}:{mi:02d}:{s:02d} {y} {text}")
        return out


def render_mailman(site: Site, messages: Iterable[Message], *, seed: int = 0,
                   version: int = 2, tz: str | None = None) -> dict[str, list[str]]:
    """Mailman log lines for the list posts among ``messages``, per log file name.

    version: 2 (``post``, ``smtp``, ``bounce``) or 3 (``smtp.log``, ``mailman.log``).
    tz: zoneinfo name for the local time Mailman writes (default UTC).
    """
    return MailmanRenderer(site, seed=seed, version=version, tz=tz).render(messages)


def write_mailman(directory: str | Path, site: Site, messages: Iterable[Message], *,
                  seed: int = 0, version: int = 2, tz: str | None = None) -> dict[str, int]:
    """Write the Mailman logs into ``directory``; return lines written per file."""
    directory = Path(directory)
    logs = render_mailman(site, messages, seed=seed, version=version, tz=tz)
    return {name: write_lines(directory / name, lines) for name, lines in logs.items()}
