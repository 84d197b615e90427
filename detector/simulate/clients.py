"""How mail reaches the MTA: which client a user sends from, and what that client writes.

A user's mail client is sticky (derived from the address with crc32, not ``hash()``, so it
is the same in every run): Outlook and Thunderbird users submit on port 587 with SASL,
webmail submits from the webmail host on port 25. Outside mail arrives from the sending
domain's outbound host.
"""

from __future__ import annotations

import random
import zlib
from datetime import datetime

from detector.simulate import naming
from detector.simulate.scenario import Message, Site

# reply prefix each client (and UI language) puts in front of a subject
REPLY_PREFIX = {"outlook": "RE: ", "outlook-de": "AW: ", "outlook-sv": "SV: ",
                "thunderbird": "Re: ", "apple": "Re: ", "webmail": "Re: ", "mobile": "RE: "}

WORK_SUBJECTS = (
    "Rota for next week", "Clinic list for Thursday", "Minutes from Tuesday's meeting",
    "Annual leave request", "Fire safety training update", "Ward 7 staffing",
    "Discharge summary query", "Audit results Q3", "Referral - urgent", "Parking permits",
    "Lunch?", "Budget sign-off", "Bed capacity update", "Patient transport booking",
    "Policy review draft v3", "Meeting link for tomorrow", "Night shift cover",
    "Theatre schedule changes", "Pharmacy stock levels", "Infection control reminder",
    "Appraisal paperwork", "On-call swap", "Equipment order", "Board report figures",
    "Induction pack for new starters", "Sickness absence return", "Data quality check",
)
EXTERNAL_SUBJECTS = (
    "Invoice 48213", "Your order has been dispatched", "Conference registration confirmed",
    "Referral from GP surgery", "Meeting request", "Quotation for servicing",
    "Research collaboration", "Password expiry notice", "Delivery note",
    "Course booking confirmation", "Contract renewal", "Journal submission received",
)
NON_ASCII_SUBJECTS = (
    "Café rota for next week", "Grüße aus Köln – conference notes", "Réunion de service",
    "Résumé for the registrar post", "Naïve Bayes audit – results", "Zoë's leaving do 🎉",
)


def _pick(addr: str, mod: int) -> int:
    return zlib.crc32(addr.encode()) % mod


def mua_of(addr: str) -> str:
    """The sticky client of a local user."""
    k = _pick(addr, 100)
    return ("outlook" if k < 52 else "outlook-de" if k < 55 else "outlook-sv" if k < 57
            else "thunderbird" if k < 71 else "apple" if k < 75 else "mobile" if k < 80
            else "webmail")


def size(rng: random.Random, *, attachment: float = 0.12) -> int:
    base = int(rng.lognormvariate(8.9, 0.6))
    if rng.random() < attachment:
        base += int(rng.lognormvariate(12.5, 1.1))
    return max(900, min(base, 20_000_000))


def subject_for(rng: random.Random, pool: tuple[str, ...] = WORK_SUBJECTS,
                non_ascii: float = 0.03) -> str:
    if rng.random() < non_ascii:
        return naming.encode_subject(rng.choice(NON_ASCII_SUBJECTS), b=rng.random() < 0.7)
    return rng.choice(pool)


def from_local(site: Site, rng: random.Random, sender: str, recipients: list[str],
               when: datetime, subject: str, *, parent: Message | None = None,
               msg_size: int | None = None) -> Message:
    """A message a local user sends with their usual client (a reply if ``parent``)."""
    mua = mua_of(sender)
    style = mua.split("-")[0]
    n = _pick(sender, 60_000)
    ws_ip = f"10.{20 + n // 60_000}.{n // 250 % 240}.{2 + n % 250}"
    if style == "webmail":
        host, ip, helo, source, sasl, tls = (site.webmail, site.hosts[site.webmail],
                                             site.webmail, "smtp", None, False)
    else:
        host, ip, source, sasl, tls = "unknown", ws_ip, "submission", sender, True
        helo = f"WS-{n:05d}" if style == "outlook" else f"[{ws_ip}]"
    refs: list[str] = []
    irt = None
    if parent is not None:
        irt = parent.message_id
        refs = ([*parent.references, parent.message_id])[-12:]
    return Message(
        time=when, sender=sender, recipients=recipients, subject=subject,
        message_id=naming.message_id(rng, "apple" if style == "mobile" else style, when,
                                     site.domain), in_reply_to=irt,
        references=refs, size=msg_size or size(rng), client_host=host, client_ip=ip, helo=helo,
        mua=style, source=source, sasl_user=sasl, tls=tls, seed=rng.getrandbits(32),
    )


def from_outside(site: Site, rng: random.Random, sender: str, recipients: list[str],
                 when: datetime, subject: str, *, is_auto: bool = False) -> Message:
    """A message arriving from another organisation's outbound MTA."""
    dom = sender.rpartition("@")[2] or rng.choice(list(site.out_of))
    host = site.out_of.get(dom) or f"mail.{dom}"
    ip = site.hosts.setdefault(host, f"192.0.2.{2 + _pick(dom, 250)}")
    return Message(
        time=when, sender=sender, recipients=recipients, subject=subject,
        message_id=naming.message_id(rng, "remote", when, dom), size=size(rng),
        client_host=host, client_ip=ip, helo=host, is_auto=is_auto,
        mua=rng.choice(("outlook", "thunderbird", "remote", "remote")), source="smtp",
        tls=rng.random() < 0.85, seed=rng.getrandbits(32),
    )


def reply_subject(mua: str, parent_subject: str) -> str:
    """Subject a client proposes when replying.

    Outlook keeps a subject that already starts with its own "RE: " (but stacks on "Re:",
    and localized ones stack "AW: RE: ..."); Thunderbird, Apple Mail and webmail keep any
    "Re:"; some phone clients always prepend, giving "RE: RE: test".
    """
    prefix = REPLY_PREFIX.get(mua, "Re: ")
    if mua == "outlook" and parent_subject.startswith(prefix):
        return parent_subject
    if prefix == "Re: " and parent_subject.lower().startswith("re: "):
        return parent_subject
    return prefix + parent_subject


def auto_reply(site: Site, rng: random.Random, user: str, to: str, when: datetime,
               parent: Message) -> Message:
    """A Sieve vacation answer: sent by the user's mail store with the null sender."""
    store = site.mailbox_host.get(user, "")
    subject = rng.choice(("Auto: ", "Auto: ", "Automatic reply: ", "Out of Office: "))
    mid_host = store or f"mx1.{site.domain}"
    msg = Message(
        time=when, sender="", recipients=[to], subject=subject + parent.subject,
        message_id=f"dovecot-sieve-{int(when.timestamp())}-{rng.randint(1000, 99999)}-0"
                   f"@{mid_host}",
        in_reply_to=parent.message_id, references=[parent.message_id],
        size=rng.randint(1_500, 3_500), is_auto=True, mua="sieve", seed=rng.getrandbits(32),
    )
    if store:  # remote store submits over SMTP; a store on the MTA itself uses sendmail(1)
        msg.client_host, msg.client_ip, msg.helo = store, site.hosts[store], store
        msg.tls = False
    else:
        msg.source = "pickup"
    return msg
