"""``--redact``: reports that can go to people who may not see who wrote to whom.

Every address-shaped token in what a report shows (addresses, and the text that quotes
them: headlines, evidence, reject reasons, raw line samples, Message-IDs) gets its local
part replaced by a short keyed hash; the domain stays, so a reader still sees which site
or list was involved. The same local part gives the same hash in every page and run of
one warehouse (the key is kept in its ``meta`` table), so a reader can follow one person
through a report without learning who it is; without the key, a dictionary of likely
names cannot be hashed to match. Counts are untouched: only text is rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from detector.warehouse import Warehouse

#: hex digits of a redacted local part: 40 bits, so a site's million addresses rarely
#: share one (a collision would merge two people in a table, never change a count)
HASH_DIGITS = 10
_META_KEY = "redact_key"
# a local part is anything up to '@' that is no separator of the text around it ('='
# belongs to it: a VERP or SRS address carries a whole address before its '@', and
# "sasl_username=" is better hashed with it than a name left); a domain must follow
_ADDRESS = re.compile(r"[^\s<>()\[\]{}\"',;:@]+@(?=[A-Za-z0-9\-])")


class Redactor:
    """Rewrites address local parts in text, and in every string of a JSON-like value."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def local(self, local_part: str) -> str:
        """The stable stand-in for one local part (case-insensitive, as mail treats it)."""
        digest = hmac.new(self._key, local_part.lower().encode("utf-8", "surrogatepass"),
                          hashlib.sha256).hexdigest()
        return f"h{digest[:HASH_DIGITS]}"

    def text(self, text: str) -> str:
        return _ADDRESS.sub(lambda m: f"{self.local(m.group()[:-1])}@", text)

    def value(self, value: Any) -> Any:
        """A copy of ``value`` (dicts, lists, tuples, strings, anything else as it is)
        with every string redacted; dict keys are ours, not log text, and are kept."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def warehouse_redactor(wh: Warehouse) -> Redactor:
    """The warehouse's redactor: its key made on first use and kept, so hashes stay the
    same from night to night (and never leave the warehouse)."""
    row = wh.scalar_row("SELECT value FROM meta WHERE key = ?", [_META_KEY])
    if row is None:
        key = secrets.token_hex(32)
        wh.con.execute("INSERT INTO meta VALUES (?, ?)", [_META_KEY, key])
    else:
        key = str(row[0])
    return Redactor(bytes.fromhex(key))
