"""The ``Incident`` type: the incidents.json contract fields and typed evidence.

An incident is built once per detection and never changed in place: the stages after
aggregation (narrative, folding, status) make new values with ``dataclasses.replace``.
Times are aware datetimes in UTC; ``to_record`` turns an incident into its JSON form.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Literal

from detector.times import iso_z
from detector.whatif import PolicyEstimate

Status = Literal["new", "ongoing", "grown", "ended"]
#: statuses an incident can have, in the order of the incidents.json contract
STATUSES: tuple[Status, ...] = ("new", "ongoing", "grown", "ended")

#: kinds of incident made of answers to one post: their root is the message the answers
#: answer, and their messages are replayed against storm-protection policies
ANSWERING_KINDS = frozenset({"reply_storm", "auto_storm"})

#: incidents.json fields whose names and meanings are fixed, in this order
CONTRACT_FIELDS = (
    "id", "kind", "severity", "rule", "list", "subject", "root_message_id",
    "start", "end", "peak", "messages", "deliveries", "senders", "status",
)  # fmt: skip

#: fields that belong to one detection's bookkeeping, not to what is reported
_INTERNAL = frozenset({"key", "changed"})

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


@dataclass(frozen=True)
class Root:
    """The message that started the incident."""

    message_id: str | None
    sender: str | None
    subject: str | None
    ts: datetime | None
    deliveries: int | None
    message_uid: str | None = None


@dataclass(frozen=True)
class SenderCount:
    """One sender's part in an incident."""

    sender: str
    messages: int
    deliveries: int
    first_ts: datetime


@dataclass(frozen=True)
class Minute:
    """Messages sent and deliveries made in one minute of an incident."""

    minute: datetime
    messages: int
    deliveries: int


@dataclass(frozen=True)
class ConditionResult:
    """One condition of the rule, with the threshold in force and what was measured."""

    measure: str
    op: str
    param: str
    threshold: float
    value: float


@dataclass(frozen=True)
class FoldedIncident:
    """An incident of a lower kind whose root is one of this incident's messages: reported
    inside it (``fold.py``), not apart."""

    id: str
    kind: str
    rule: str
    headline: str
    root_message_id: str | None


@dataclass(frozen=True)
class Incident:
    # the incidents.json contract (see DESIGN.md)
    id: str
    kind: str
    severity: str
    rule: str
    list: str | None
    subject: str | None
    root_message_id: str | None
    start: datetime
    end: datetime
    peak: datetime
    messages: int
    deliveries: int
    senders: int
    status: Status = "new"
    # evidence
    group_key: str = ""
    last_message: datetime | None = None
    replies: int = 0
    repliers: int = 0
    list_size: int = 0
    amplification: float = 0.0
    bounced: int = 0
    occurrences: int = 1  # times one cause came back (a loop repeating), merged into one
    cause: str = ""
    root: Root | None = None
    top_senders: tuple[SenderCount, ...] = ()
    timeline: tuple[Minute, ...] = ()
    rule_description: str = ""
    rule_params: Mapping[str, float] = field(default_factory=dict)
    window: str | None = None
    measures: Mapping[str, float] = field(default_factory=dict)
    conditions: tuple[ConditionResult, ...] = ()
    what_if: tuple[PolicyEstimate, ...] = ()
    headline: str = ""
    evidence: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    folded: tuple[FoldedIncident, ...] = ()
    # memory across runs (see store.py)
    first_reported: datetime | None = None
    previous_severity: str | None = None
    # bookkeeping of one detection: the span key, and whether this run changed the
    # incident (new, or grown) relative to what the warehouse remembered
    key: str = ""
    changed: bool = True

    def to_record(self) -> dict[str, JSONValue]:
        """The incidents.json form: contract fields in order, then the evidence."""
        record = {name: _plain(getattr(self, name)) for name in CONTRACT_FIELDS}
        for f in fields(self):
            if f.name not in record and f.name not in _INTERNAL:
                record[f.name] = _plain(getattr(self, f.name))
        return record


def stable_id(kind: str, rule: str, group_key: str, root: str | None,
              start: datetime | None) -> str:
    """Same incident, same id on a re-run and as it grows: it hangs on the rule, the
    group and the root message (the start when no Message-ID was logged)."""
    anchor = root or (iso_z(start) or "")
    digest = hashlib.sha1(f"{rule}|{group_key}|{anchor}".encode()).hexdigest()
    return f"{kind}-{digest[:12]}"


def _plain(value: object) -> JSONValue:
    """A JSON-ready copy of a field; NaN and infinities become null."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)  # type: ignore[arg-type]
                if f.name != "message_uid"}
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
