"""Names, addresses, host names and Message-IDs for simulated sites.

Everything uses reserved names (``*.example``, ``example.com/net/org``) and documentation
address blocks (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) so no simulated
line can point at a real organisation.
"""

from __future__ import annotations

import base64
import random
from datetime import datetime

FIRST = (
    "james", "john", "robert", "michael", "david", "william", "richard", "joseph", "thomas",
    "charles", "mary", "patricia", "jennifer", "linda", "elizabeth", "barbara", "susan",
    "jessica", "sarah", "karen", "nancy", "lisa", "betty", "margaret", "sandra", "ashley",
    "emily", "donna", "michelle", "carol", "amanda", "melissa", "deborah", "stephanie",
    "rebecca", "laura", "helen", "anna", "olivia", "amelia", "isla", "ava", "mia", "ruby",
    "grace", "sophie", "chloe", "lucy", "ellie", "jack", "harry", "oliver", "george",
    "noah", "charlie", "jacob", "alfie", "freddie", "oscar", "leo", "archie", "henry",
    "joshua", "samuel", "daniel", "matthew", "luke", "adam", "ben", "tom", "peter", "paul",
    "mark", "andrew", "simon", "ian", "gareth", "rhys", "owen", "aisha", "fatima", "priya",
    "anjali", "ravi", "sanjay", "arjun", "mohammed", "ali", "omar", "yusuf", "zara",
    "hannah", "katie", "claire", "fiona", "morag", "eilidh", "niamh", "siobhan", "ciara",
    "sean", "liam", "declan", "conor", "patrick",
)

LAST = (
    "smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies",
    "robinson", "wright", "thompson", "evans", "walker", "white", "roberts", "green",
    "hall", "wood", "jackson", "clarke", "patel", "khan", "lewis", "james", "phillips",
    "mason", "mitchell", "rose", "davis", "rodriguez", "cox", "alexander", "morgan",
    "moore", "martin", "price", "hughes", "edwards", "harris", "baker", "turner", "parker",
    "collins", "bell", "cooper", "ward", "king", "morris", "clark", "hill", "scott",
    "young", "allen", "adams", "campbell", "anderson", "murphy", "kelly", "bennett", "gray",
    "rogers", "cook", "carter", "shaw", "watson", "harrison", "lee", "chapman", "lloyd",
    "richardson", "palmer", "fisher", "ellis", "knight", "webb", "hunt", "mills", "owen",
    "holmes", "stevens", "gibson", "marshall", "ahmed", "hussain", "begum", "ali", "singh",
    "kaur", "shah", "mistry", "chowdhury", "das", "nowak", "kowalski", "silva", "santos",
    "costa", "murray", "reid", "fraser", "macdonald", "stewart", "ross", "grant",
    "hamilton", "graham", "kerr", "duncan", "burns", "boyle", "doyle", "byrne", "oconnor",
    "quinn", "lynch", "walsh", "ryan", "flynn", "nolan", "brennan",
)

# External domains: (domain, MX host, outbound client host, reply style).
# Reply styles mimic what common receiving servers answer after DATA.
EXTERNAL = (
    ("example.com", "mx.example.com", "mail.example.com", "postfix"),
    ("example.net", "mx1.example.net", "smtp.example.net", "postfix"),
    ("example.org", "mail.example.org", "mail.example.org", "postfix"),
    ("other.example", "mx.other.example", "out.other.example", "postfix"),
    ("bigmail.example", "mx-in.l.bigmail.example", "mail-wr1-f54.bigmail.example", "gsmtp"),
    ("council.example", "council-example.mail.protection.cloudmail.example",
     "mail-am5eur02.outbound.cloudmail.example", "exo"),
    ("university.example", "mx1.university.example", "smtp-out.university.example", "postfix"),
    ("gp-surgery.example", "mail.gp-surgery.example", "mail.gp-surgery.example", "postfix"),
    ("pharma.example", "pharma-example.mail.protection.cloudmail.example",
     "mail-db3eur04.outbound.cloudmail.example", "exo"),
    ("supplier.example", "mx.supplier.example", "relay.supplier.example", "postfix"),
    ("gone.example", "mx.gone.example", "mail.gone.example", "postfix"),
    ("greylist.example", "mx.greylist.example", "mail.greylist.example", "postfix"),
    ("mailing.example.net", "mx.mailing.example.net", "bounce.mailing.example.net", "postfix"),
    ("news.example", "mx.news.example", "out.news.example", "postfix"),
)

# Sender local parts for automated or role mail from outside.
ROLE_LOCALPARTS = ("info", "noreply", "no-reply", "notifications", "support", "accounts",
                   "newsletter", "office", "admin", "bookings")

_B52 = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"


def person_address(rng: random.Random, domain: str, taken: set[str]) -> str:
    """first.last@domain (sometimes initial.last), numbered on collision like HR systems do."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = f"{first[0]}.{last}" if rng.random() < 0.15 else f"{first}.{last}"
    addr, n = f"{local}@{domain}", 1
    while addr in taken:
        n += 1
        addr = f"{local}{n}@{domain}"
    taken.add(addr)
    return addr


def ip_in(rng: random.Random, block: str) -> str:
    """A host address inside a /24 written as 'a.b.c' (never .0, .255)."""
    return f"{block}.{rng.randint(2, 254)}"


def message_id(rng: random.Random, style: str, when: datetime, domain: str) -> str:
    """A Message-ID (without brackets) in the shape the named mail client produces."""
    if style == "outlook":  # Outlook over SMTP: <000001d23e5a$4b3c2d10$e1b48730$@domain>
        a, b = rng.getrandbits(32), rng.getrandbits(32)
        return f"{rng.randint(0, 0x1FF):04x}01d2{rng.getrandbits(16):04x}${a:08x}${b:08x}$@{domain}"
    if style == "thunderbird":
        h = f"{rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}@{domain}"
    if style == "apple":
        h = f"{rng.getrandbits(128):032X}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}@{domain}"
    if style == "webmail":  # Roundcube: md5-looking hex
        return f"{rng.getrandbits(128):032x}@{domain}"
    if style == "app":  # Java/Python application servers
        return f"{int(when.timestamp() * 1000)}.{rng.randint(1000, 99999)}.JavaMail.app@{domain}"
    # "remote": a generic external MTA/MUA
    token = base64.b32encode(rng.getrandbits(80).to_bytes(10, "big")).decode().lower()
    return f"{token}@{domain}"


def encode_subject(text: str, *, b: bool = True) -> str:
    """RFC 2047 encoded-word as a client would send a non-ASCII Subject."""
    raw = text.encode()
    if b:
        return f"=?UTF-8?B?{base64.b64encode(raw).decode()}?="
    q = "".join(
        "_" if ch == 0x20 else chr(ch) if 0x21 <= ch < 0x7F and ch not in b"=?_" else f"={ch:02X}"
        for ch in raw
    )
    return f"=?UTF-8?Q?{q}?="


def b52(n: int, width: int = 0) -> str:
    """Postfix long-queue-id digits: 0-9 and consonants, most significant first."""
    out: list[str] = []
    while n or len(out) < max(width, 1):
        n, r = divmod(n, 52)
        out.append(_B52[r])
    return "".join(reversed(out))


def b51(n: int) -> str:
    """Like b52 without 'z' (Postfix uses 'z' to separate time from inode)."""
    alphabet = _B52[:-1]
    out = []
    while True:
        n, r = divmod(n, 51)
        out.append(alphabet[r])
        if not n:
            return "".join(reversed(out))
