"""Exchange Server message tracking logs (MSGTRK, MSGTRKMS, MSGTRKMD, MSGTRKMA) -> events.

A message tracking log is CSV under a W3C-style header (``#Software``, ``#Version``,
``#Log-type: Message Tracking Log``, ``#Date``, ``#Fields``). The ``#Fields`` line names
the columns, and differs by version: Exchange 2010 writes 26 fields, 2013 adds
``network-message-id`` (27), 2016/2019 add ``transport-traffic-type``, ``log-id`` and
``schema-version`` (30). Columns are found by name, from the header in the file's first
lines (``ctx.head``) or from a ``#Fields`` line inside the batch (files concatenated with
``cat`` repeat their headers); rows of a file without a header are read with the field
list whose length matches its first row.

One row is one event of one message on one server. The events the model reads map onto
the shared kinds: RECEIVE and DSN (the creation of a non-delivery report) are
``received``; DELIVER, SEND, SENDEXTERNAL, FAIL and DEFER are ``delivery`` (one row per
recipient: ``recipient-address`` and ``recipient-status`` are ``;``-joined lists);
EXPAND is ``expansion`` (``related-recipient-address`` is the distribution group, one row
per member). Every other event is ``exchange_<event>``.

``internal-message-id`` is per server, so ``queue_id`` is ``<server>:<id>``. A file is
written by one server: the one most of its first rows name as their writer
(``server-hostname`` for most events, the sending side ``client-hostname`` for SEND
events and, in Exchange 2010, for DELIVER), short name in lower case, so that ``EX01``
and ``ex01.contoso.com`` agree. That server is the ``host`` of every row of the file.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from detector.formats import csvlog
from detector.formats.context import ParseContext
from detector.formats.finish import outside_calendar_unparsed
from detector.formats.kinds import (
    Kind,
    Sample,
    classifier,
    descriptions,
    equals,
    field_groups,
    one_of,
)
from detector.schema import conform

NAME = "exchange"

FIELDS_2010 = (
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname",
    "source-context", "connector-id", "source", "event-id", "internal-message-id",
    "message-id", "recipient-address", "recipient-status", "total-bytes", "recipient-count",
    "related-recipient-address", "reference", "message-subject", "sender-address",
    "return-path", "message-info", "directionality", "tenant-id", "original-client-ip",
    "original-server-ip", "custom-data",
)
FIELDS_2013 = (*FIELDS_2010[:11], "network-message-id", *FIELDS_2010[11:])
FIELDS_2016 = (*FIELDS_2013, "transport-traffic-type", "log-id", "schema-version")
_BY_COUNT = {len(f): f for f in (FIELDS_2010, FIELDS_2013, FIELDS_2016)}

#: event-id -> what Microsoft's "Message tracking" page says it means (2010 to 2019)
EVENTS: dict[str, str] = {
    "AGENTINFO": "a transport agent logged custom data",
    "BADMAIL": "a pickup/replay message that can be neither delivered nor returned",
    "CLIENTSUBMISSION": "a message was submitted from the Outbox of a mailbox",
    "DEFER": "delivery was delayed",
    "DELIVER": "delivered to a local mailbox",
    "DELIVERFAIL": "an agent tried to deliver to a folder that does not exist",
    "DROP": "dropped without a non-delivery report",
    "DSN": "a delivery status notification (bounce) was generated",
    "DUPLICATEDELIVER": "a duplicate copy reached the mailbox (the store removes it)",
    "DUPLICATEEXPAND": "a duplicate recipient was found while expanding a group",
    "DUPLICATEREDIRECT": "an alternate recipient was already a recipient",
    "EXPAND": "a distribution group was expanded",
    "FAIL": "delivery failed",
    "HADISCARD": "a shadow copy was discarded after the primary was delivered",
    "HARECEIVE": "a shadow copy was received",
    "HAREDIRECT": "a shadow copy was created",
    "HAREDIRECTFAIL": "a shadow copy could not be created",
    "INITMESSAGECREATED": "a message to a moderated recipient went to arbitration",
    "LOAD": "a message was loaded from the queue at boot",
    "MODERATIONEXPIRE": "a moderation request expired",
    "MODERATORAPPROVE": "a moderator approved the message",
    "MODERATORREJECT": "a moderator rejected the message",
    "MODERATORSALLNDR": "every moderation request bounced",
    "NOTIFYMAPI": "a message was found in a mailbox Outbox",
    "NOTIFYSHADOW": "a message was found in an Outbox and needs a shadow copy",
    "POISONMESSAGE": "a message entered or left the poison message queue",
    "PROCESS": "the message was processed",
    "PROCESSMEETINGMESSAGE": "a meeting message was processed",
    "RECEIVE": "received over SMTP or from a mailbox (STOREDRIVER)",
    "REDIRECT": "redirected to an alternate recipient",
    "RESOLVE": "a recipient was resolved to another address",
    "RESUBMIT": "resubmitted from Safety Net",
    "RESUBMITDEFER": "a Safety Net resubmission was deferred",
    "RESUBMITFAIL": "a Safety Net resubmission failed",
    "SEND": "sent over SMTP to another server",
    "SENDEXTERNAL": "sent over SMTP outside the organisation",
    "SUBMIT": "the submission service handed the message to transport",
    "SUBMITDEFER": "a hand-off from the submission service was deferred",
    "SUBMITDROP": "the submission service dropped the message",
    "SUBMITFAIL": "a hand-off from the submission service failed",
    "SUPPRESSED": "the transmission was suppressed",
    "THROTTLE": "the message was throttled",
    "TRANSFER": "recipients were moved to a forked copy",
}
# delivery events: the status each one gives its recipients
_STATUS = {"DELIVER": "sent", "SEND": "sent", "SENDEXTERNAL": "sent", "FAIL": "bounced",
           "DEFER": "deferred"}
# events written by the sending side: client-hostname is the server whose log it is
_SENDING = ("SEND", "SENDEXTERNAL")
# events read as the shared kinds of docs/formats.md (the rest are exchange_<event>)
_RECEIVED = ("RECEIVE", "DSN")
_DELIVERY = tuple(_STATUS)

# ---- samples -------------------------------------------------------------------------
# Real rows of ../shared/corpus/exchange; the corpus holds only AGENTINFO, HAREDIRECT,
# HAREDIRECTFAIL, NOTIFYMAPI, RECEIVE, SEND and SENDEXTERNAL, so the other events get a
# row in the shape of Microsoft's "Message tracking in Exchange Server" page: its 2016/2019
# field list, the source component it names for the event, the fields it says the event
# fills (related-recipient-address for EXPAND/RESOLVE/REDIRECT, reference for DSN).
DOC_PAGE = ("Microsoft Learn, 'Message tracking in Exchange Server' (event types, source "
            "values, fields of the message tracking log)")
_ARTEFACTS_HEAD = (
    "#Software: Microsoft Exchange Server", "#Version: 15.01.2375.007",
    "#Log-type: Message Tracking Log", "#Date: 2022-09-19T15:02:29.339Z")
_KINESIS_HEAD = (
    "#Software: Microsoft Exchange Server", "#Version: 15.00.1104.000",
    "#Log-type: Message Tracking Log", "#Date: 2017-05-22T17:33:35.632Z",
    "#Fields: date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,"
    "connector-id,source,event-id,internal-message-id,message-id,network-message-id,"
    "recipient-address,recipient-status,total-bytes,recipient-count,related-recipient-address,"
    "reference,message-subject,sender-address,return-path,message-info,directionality,"
    "tenant-id,original-client-ip,original-server-ip,custom-data")
_FIELDS_LINE = "#Fields: " + ",".join(FIELDS_2016)
_ELASTIC = "corpus exchange/elastic-integrations.msgtrk.log:"
_SAMPLE_RECEIVE = Sample(
    "2024-01-25T15:16:09.949Z,10.11.12.14,exchange-mail.my.domain.com,10.11.12.14,"
    "exchange-mail,08DC1DB12C345BE5;2024-01-25T15:16:09.544Z;0,exchange-mail\\Default "
    "exchange-mail,SMTP,RECEIVE,70912345566403,<20240123200014.123F425E28@host01.my.domain.com>"
    ",1e6eb197-c6b4-1234-1b69-56dc1db88f50,mailuser@my.domain.com,,7229,1,,"
    ",vzdump backup status (host01.my.domain.com): backup successful,root@host01.my.domain.com,"
    "root@host01.my.domain.com,0cA: ,Incoming,,10.11.12.13,10.11.12.14,S:ProxyHop1=exchange-mai"
    "l.my.domain.com(10.11.12.14);S:MessageValue=MediumHigh;S:Replication=Failed;"
    "S:FirstForestHop=exchange-mail.my.domain.com;S:FromEntity=Internet;S:ProxiedClientIPAddres"
    "s=10.11.12.13;S:ProxiedClientHostname=host01.my.domain.com;S:DeliveryPriority=Normal;"
    "S:AccountForest=my.domain.com,Email,05503123-c5b9-46fe-1234-56dc1db88f8f,"
    "15.02.0330.005", _ELASTIC + "2")
_SAMPLE_SEND = Sample(
    "2024-01-07T00:00:07.463Z,192.168.0.1,exchange,192.168.0.2,exchange.example.com,"
    ";250 2.0.0OK20240107001234.567E6224C8@monitor.example.com[Hostname=exchange.example.com];"
    "ClientSubmitTime:,Intra-Organization SMTP Send Connector,SMTP,SEND,29519319995411,"
    "20240107001234.567E6224C8@monitor.example.com,0b7099ea-cb95-1234-328e-08dc5f139ac8,"
    "uwe.musterman@example.com,250 2.1.5Recipient OK,38663,1,,,ein Titel,support@example.com,"
    "support@example.com,2024-01-07T00:00:05.535Z;LSRV=exchange.example.com:TOTAL-HUB=1.921|"
    "SMR=0.127(SMRDE=0.002|SMRC=0.125(SMRCL=0.105|X-SMRCR=0.125))|CAT=1.698(CATOS=0.018(CATSM=0"
    ".017(CATSM-Malware Agent=0.017))|CATRESL=0.004|CATORES=1.567(CATRS=1.566(CATRS-ScanMail "
    "Routing Agent=0.117|CATRS-Transport Rule Agent=0.002(X-ETREX=0.002)|CATRS-Index "
    "Routing Agent=1.444))|CATORT=0.108(CATRT=0.107(CATRT-Journal Agent=0.107)))|"
    "QDM=0.010|SMSC=0.006(X-SMSDR=0.011)|SMS=0.076(SMSMBXD=0.071),Originating,"
    ",,,S:E2ELatency=1.928;S:MsgRecipCount=1;S:IncludeInSla=True;S:Microsoft.Exchange.Transport"
    ".MailRecipient.RequiredTlsAuthLevel=Opportunistic;S:IsSmtpResponseFromExternalServer=False"
    ";S:DeliveryPriority=Normal;S:AccountForest=example.com,Email,a7ae9ef9-e10c-4111-19bf-08dc0"
    "f111bee,15.01.2507.035", _ELASTIC + "4")
_CORPUS_SAMPLES: dict[str, Sample] = {
    "AGENTINFO": Sample(
        "2017-05-22T17:33:35.632Z,,EX13D13UWA001,,,,,AGENT,AGENTINFO,64712272257893,"
        "<1028007174.22872.1495474412586.JavaMail.apollo@apollo-adaws-onebox-acc-1a-4c722f6e.us-"
        "east-1.amazon.com>,13fad5b7-39c5-46e7-130e-08d4a138ac67,bryanson@amazon.com,"
        ",7631,1,,,Started JlbRelayShortCircuit/us-west-2/PDX1/Prod deployment,"
        "apollo@amazon.com,jlb-approval@amazon.com,,Incoming,,10.25.10.214,10.43.162.232,"
        "S:AMA=SUM|action=p|error=|atch=0;S:CompCost=|ETR=0;S:DeliveryPriority=Normal;"
        "S:OriginalFromAddress=jlb-approval@amazon.com;S:AccountForest=ant.amazon.com",
        "corpus exchange/kinesis-agent-windows.msgtrk.log:6", before=_KINESIS_HEAD),
    "HAREDIRECT": Sample(
        '2017-05-22T17:33:35.695Z,,,,EX13D13UWA001,"EX13D13UWB004.ant.amazon.com '
        "= 250 2.6.0 < 1028007174.22872.1495474412586.JavaMail.apollo@apollo - "
        "adaws - onebox - acc - 1a - 4c722f6e.us - east - 1.amazon.com > [InternalId "
        "= EX13D13UWB004.ant.amazon.com, Hostname = 64712272257897] Queued mail "
        'for redundancy",,SMTP,HAREDIRECT,64712272257894,<1028007174.22872.1495474412586.JavaMail'
        ".apollo@apollo-adaws-onebox-acc-1a-4c722f6e.us-east-1.amazon.com>,13fad5b7-39c5-46e7-130"
        "e-08d4a138ac67,abannert@amazon.com;bryanson@amazon.com;zihoncao@amazon.com,"
        ",7312,3,,,Started JlbRelayShortCircuit/us-west-2/PDX1/Prod deployment,"
        "apollo@amazon.com,jlb-approval@amazon.com,,Incoming,,,,S:DeliveryPriority=Normal;"
        "S:OriginalFromAddress=jlb-approval@amazon.com;S:AccountForest=ant.amazon.com",
        "corpus exchange/kinesis-agent-windows.msgtrk.log:7", before=_KINESIS_HEAD),
    "HAREDIRECTFAIL": Sample(
        "2024-01-25T15:16:09.843Z,,,,exchange-mail,No suitable shadow servers,,"
        "SMTP,HAREDIRECTFAIL,70971234566456,<20240124222112.B4AE1234EF@host01.my.domain.com>,"
        "2fd37dca-1234-5bfb-175d-08dc1db88f52,mailuser@my.domain.com,,15054,1,,"
        ",Undelivered Mail Returned to Sender,MAILER-DAEMON@host01.my.domain.com,"
        "root@host01.my.domain.com,,Incoming,,,,S:DeliveryPriority=Normal;S:OriginalFromAddress=r"
        "oot@host01.my.domain.com;S:AccountForest=my.domain.com,Email,dc69df25-1234-564c-41c4-08d"
        "c1db88f7f,15.02.0330.005", _ELASTIC + "1"),
    "NOTIFYMAPI": Sample(
        "2022-09-19T15:02:29.339Z,fe80::1234:5678:4321:1010%3,SERVER-HOSTNAME,,"
        ',"MDB:12345678-3232-2323-1111-12345679666, Mailbox:33345678-3232-2323-1111-08da9fd00918,'
        " Event:63779422, MessageClass:IPM.Note, CreationTime:2022-09-19T15:02:29.211Z,"
        ' ClientType:MOMT, SubmissionAssistant:MailboxTransportSubmissionEmailAssistant",'
        ",STOREDRIVER,NOTIFYMAPI,,,,,,,,,,,user.name1@domain.com,,2022-09-19T15:02:29.211Z;"
        "LSRV=XXX-MAIL.DOMAIN.TEST:TOTAL-SUB=0.128|SA=0.128|MTSS-PEN=0.000,,,,,"
        "S:ItemEntryId=00-XXX-00,,12345678-3232-2323-1111-12345679988,15.01.2375.007",
        "corpus exchange/artefacts-help.msgtrk.log:6", before=(*_ARTEFACTS_HEAD, _FIELDS_LINE)),
}
# the source component Microsoft names for each event (its "source" values table)
_DOC_SOURCE = {
    "BADMAIL": "PICKUP", "CLIENTSUBMISSION": "STOREDRIVER", "DEFER": "SMTP",
    "DELIVER": "STOREDRIVER", "DELIVERFAIL": "STOREDRIVER", "DROP": "AGENT", "DSN": "DSN",
    "DUPLICATEDELIVER": "STOREDRIVER", "DUPLICATEEXPAND": "ROUTING",
    "DUPLICATEREDIRECT": "ROUTING", "EXPAND": "ROUTING", "FAIL": "SMTP",
    "HADISCARD": "REDUNDANCY", "HARECEIVE": "SMTP", "INITMESSAGECREATED": "APPROVAL",
    "LOAD": "BOOTLOADER", "MODERATIONEXPIRE": "APPROVAL", "MODERATORAPPROVE": "APPROVAL",
    "MODERATORREJECT": "APPROVAL", "MODERATORSALLNDR": "APPROVAL",
    "NOTIFYSHADOW": "STOREDRIVER", "POISONMESSAGE": "POISONMESSAGE", "PROCESS": "ROUTING",
    "PROCESSMEETINGMESSAGE": "MEETINGMESSAGEPROCESSOR", "RECEIVE": "SMTP",
    "REDIRECT": "ROUTING", "RESOLVE": "ROUTING", "RESUBMIT": "SAFETYNET",
    "RESUBMITDEFER": "SAFETYNET", "RESUBMITFAIL": "SAFETYNET", "SEND": "SMTP",
    "SENDEXTERNAL": "SMTP", "SUBMIT": "STOREDRIVER", "SUBMITDEFER": "STOREDRIVER",
    "SUBMITDROP": "STOREDRIVER", "SUBMITFAIL": "STOREDRIVER", "SUPPRESSED": "ROUTING",
    "THROTTLE": "ROUTING", "TRANSFER": "ROUTING", "AGENTINFO": "AGENT",
    "HAREDIRECT": "SMTP", "HAREDIRECTFAIL": "SMTP", "NOTIFYMAPI": "STOREDRIVER",
    # in the Exchange 2007 event table ("Information Written to the Message Tracking
    # Log"), not in the current list: an unknown event to this reader
    "SUSPEND": "SMTP",
}
_DOC_BASE = {
    "date-time": "2024-01-25T15:16:10.112Z", "client-ip": "10.11.12.14",
    "client-hostname": "exchange-mail.my.domain.com", "server-ip": "10.11.12.14",
    "server-hostname": "exchange-mail", "internal-message-id": "70912345566403",
    "message-id": "<20240123200014.123F425E28@host01.my.domain.com>",
    "network-message-id": "1e6eb197-c6b4-1234-1b69-56dc1db88f50",
    "recipient-address": "mailuser@my.domain.com", "total-bytes": "7229",
    "recipient-count": "1", "message-subject": "backup status",
    "sender-address": "root@host01.my.domain.com", "return-path": "root@host01.my.domain.com",
    "directionality": "Incoming", "custom-data": "S:DeliveryPriority=Normal",
    "transport-traffic-type": "Email", "log-id": "05503123-c5b9-46fe-1234-56dc1db88f8f",
    "schema-version": "15.02.0330.005",
}
# the fields the page says an event fills beyond the message's own
_DOC_EXTRA: dict[str, dict[str, str]] = {
    "EXPAND": {"recipient-address": "mailuser@my.domain.com;backup@my.domain.com",
               "recipient-count": "2", "related-recipient-address": "it.staff@my.domain.com"},
    "RESOLVE": {"related-recipient-address": "mail.user@my.domain.com"},
    "REDIRECT": {"related-recipient-address": "mail.user@my.domain.com"},
    "DSN": {"reference": "<20240123200014.123F425E28@host01.my.domain.com>",
            "sender-address": "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@my.domain.com",
            "return-path": "<>", "message-subject": "Undeliverable: backup status"},
}


def doc_row(event: str) -> str:
    """A 2016/2019 row of ``event`` in the documented shape (see ``DOC_PAGE``)."""
    values = {**_DOC_BASE, **_DOC_EXTRA.get(event, {}), "source": _DOC_SOURCE[event],
              "event-id": event}
    out = []
    for f in FIELDS_2016:
        v = values.get(f, "")
        out.append(f'"{v}"' if any(c in v for c in ',"\n') else v)
    return ",".join(out)


def _sample(event: str) -> Sample:
    return _CORPUS_SAMPLES.get(event) or Sample(doc_row(event), f"{DOC_PAGE}: {event}")


# ---- the kind table ------------------------------------------------------------------
# Every test is on event-id (stripped, upper case); the first row that holds wins.
TABLE: tuple[Kind, ...] = (
    Kind("received", "RECEIVE (SMTP or mailbox submission), or DSN: a message accepted here",
         (one_of(_RECEIVED, "event-id"),), "facts",
         (_SAMPLE_RECEIVE, Sample(
             doc_row("DSN"), f"{DOC_PAGE}: DSN (reference: the reported message)"))),
    Kind("delivery",
         "DELIVER/SEND (sent), FAIL (bounced), DEFER (deferred): one per recipient",
         (one_of(_DELIVERY, "event-id"),), "deliveries", (_SAMPLE_SEND,)),
    Kind("expansion", "EXPAND: one member of the distribution group being expanded",
         (equals("EXPAND", "event-id"),), "members",
         (Sample(doc_row("EXPAND"),
                 f"{DOC_PAGE}: EXPAND (related-recipient-address: the group)"),)),
    *(Kind(f"exchange_{e.lower()}", d, (equals(e, "event-id"),), "facts", (_sample(e),))
      for e, d in EVENTS.items() if e not in (*_RECEIVED, *_DELIVERY, "EXPAND")),
    Kind("exchange_other", "an event-id not in Microsoft's list", (), "facts",
         (Sample(doc_row("SUSPEND"), "Microsoft TechNet (Exchange 2007), 'Information "
                 "Written to the Message Tracking Log': SUSPEND, in the shape of " + DOC_PAGE),)),
    Kind("exchange_header", "a #Software/#Version/#Log-type/#Date/#Fields header line", None,
         samples=(Sample(_FIELDS_LINE, "corpus exchange/artefacts-help.msgtrk.log:5",
                         before=_ARTEFACTS_HEAD),)),
    # a row without a readable date-time or event-id, or a record whose quotes do not
    # balance (cut by a batch boundary): given by parse, not by a test on the event
    Kind("unparsed",
         "a line that is not a well-formed row (or a row cut by a batch boundary)", None,
         samples=(Sample(
             "2025-01-14T09:29:05.327Z,216.160.83.56,HELLOWORLD,175.16.199.1,global-mail-"
             'onmicrosoft-com.mail.protection.outlook.com,";250 2.6.0 <1736846922.907742.29'
             "42@foo.bar.local> ", _ELASTIC + "5, cut inside its quoted source-context"),)),
)
KINDS: dict[str, str] = descriptions(TABLE)
_KINDS_OF = {g: [k for k, kg in field_groups(TABLE).items() if kg == g]
             for g in ("facts", "deliveries", "members")}


def _event_kinds() -> tuple[dict[str, str], str]:
    """event-id -> kind, and the kind of an event-id not listed, from the table.

    Every test of the table is on event-id, so the table is run once over Microsoft's
    event-ids instead of over every row: the 40-row chain costs about 0.11 s a million
    rows, the lookup it gives 0.02 s.
    """
    assert all(c.column == "event-id" for k in TABLE for c in k.when or ())
    names = [*EVENTS, "\x00unknown"]
    kinds = pl.DataFrame({"event-id": names}).select(classifier(TABLE)).to_series()
    *known, unknown = kinds.to_list()
    return dict(zip(EVENTS, known, strict=True)), unknown


_BY_EVENT, _UNKNOWN_EVENT = _event_kinds()

# the fields read (the CSV reader skips the others: custom-data, log-id...)
_USED = frozenset({
    "date-time", "client-ip", "client-hostname", "server-ip", "server-hostname",
    "source-context", "source", "event-id", "internal-message-id", "message-id",
    "network-message-id", "recipient-address", "recipient-status", "total-bytes",
    "recipient-count", "related-recipient-address", "reference", "message-subject",
    "sender-address", "return-path", "message-info",
})
# a data row starts with its UTC timestamp; a '#' line is a header line
_START = r"^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|#)"
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
_SOURCES = frozenset({
    "ADMIN", "AGENT", "APPROVAL", "BOOTLOADER", "DNS", "DSN", "GATEWAY", "MAILBOXRULE",
    "MEETINGMESSAGEPROCESSOR", "ORAR", "PICKUP", "POISONMESSAGE", "PUBLICFOLDER", "QUEUE",
    "REDUNDANCY", "ROUTING", "SAFETYNET", "SMTP", "STOREDRIVER",
})


def sniff(lines: list[str]) -> bool:
    """A message tracking header, or (headerless) rows with a source and an event-id."""
    rows = 0
    for line in lines[:50]:
        line = line.lstrip("\ufeff")
        if line.startswith(("#Log-type: Message Tracking Log", "#Fields: date-time,client-ip,")):
            return True
        if line[:4].isdigit() and line[10:11] == "T":
            row = next(csv.reader([line]), [])
            if len(row) >= 26 and row[7] in _SOURCES and row[8].isupper():
                rows += 1
    return rows > 0


@dataclass(frozen=True)
class _Layout:
    """How a file's rows read: field names, Exchange 2010 or later, the writing server."""

    fields: tuple[str, ...]
    v2010: bool
    server: str | None = None


@lru_cache(maxsize=16)  # once per file, not per batch (the head is the same tuple)
def _layout_of(head: tuple[str, ...]) -> _Layout:
    """The layout the file's first lines give: its #Fields and #Version, else (no header)
    the field list whose length fits the first row; and its server."""
    d = csvlog.directives(head)
    fields = tuple(csvlog.header_fields(d["fields"])) if "fields" in d else ()
    if not fields:
        first = next((x for x in head if x[:4].isdigit()), "")
        fields = _BY_COUNT.get(len(next(csv.reader([first]), [])) if first else 0, FIELDS_2016)
    v2010 = d.get("version", "").startswith("14.") or len(fields) == len(FIELDS_2010)
    layout = _Layout(fields, v2010)
    data = [x for x in head if x[:4].isdigit()]
    if data:  # the server most of the first rows name as their writer
        recs = csvlog.records(pl.DataFrame({"raw": data, "line_no": range(1, len(data) + 1)}))
        rows, _ = csvlog.table(recs.filter("ok"), list(fields), _USED)
        names = rows.select(_server(v2010)).to_series().drop_nulls().to_list()
        if names:
            layout = _Layout(fields, v2010, Counter(names).most_common(1)[0][0])
    return layout


def _col(name: str) -> pl.Expr:
    return pl.col(name)


def _short(host: pl.Expr) -> pl.Expr:
    """Lower-case first label of a host name (an IP address whole); null for none."""
    host = host.str.strip_chars().str.to_lowercase()
    ip = host.str.contains(r"^[\d.]+$|:")
    short = pl.when(ip).then(host).otherwise(host.str.extract(r"^([^.\s]+)", 1))
    return pl.when(short != "").then(short)


def _server(v2010: bool) -> pl.Expr:
    """The server that wrote the row (see the module docstring)."""
    event = _col("event-id").str.to_uppercase()
    sending = event.is_in(_SENDING) | ((event == "DELIVER") if v2010 else pl.lit(False))
    here = pl.when(sending).then(_col("client-hostname")).otherwise(_col("server-hostname"))
    return pl.coalesce(_short(here), _short(_col("client-hostname"))).alias("host")


def _endpoint(name: pl.Expr, ip: pl.Expr) -> pl.Expr:
    """host[ip] (Postfix's shape), or whichever of the two is known."""
    return (pl.when(name.is_not_null() & ip.is_not_null()).then(name + "[" + ip + "]")
            .otherwise(pl.coalesce(name, ip)))


def _bare_id(value: pl.Expr) -> pl.Expr:
    return value.str.strip_chars().str.strip_prefix("<").str.strip_suffix(">")


def tracking_events(rows: pl.DataFrame, *, v2010: bool = False, server: str | None = None,
                    queue: pl.Expr | None = None) -> pl.DataFrame:
    """Named string columns of message tracking rows (plus line_no and ``_raw``) -> events.

    ``server``: the host of every row (else the server most rows name as their writer);
    ``queue``: the queue id (else ``<host>:<internal-message-id>``). Microsoft 365's
    extended report, read by the m365 format, passes its own.
    """
    for name in set(FIELDS_2016) - set(rows.columns):  # a short header: absent fields
        rows = rows.with_columns(pl.lit(None, pl.String).alias(name))
    event = _col("event-id").str.strip_chars().str.to_uppercase()
    kind = event.replace_strict(_BY_EVENT, default=_UNKNOWN_EVENT)
    # one server writes a file: the server most rows name (per file, from its first
    # lines), so that every row of a message on it has the same host and queue id
    if server is None and rows.height:
        server = rows.select(_server(v2010).drop_nulls().mode().sort().first()).item()
    host = pl.lit(server, pl.String).alias("host") if server else _server(v2010)
    if queue is None:
        queue = pl.col("host") + ":" + _col("internal-message-id").str.strip_chars()
    frame = rows.with_columns(
        _col("date-time").str.strip_chars()
        .str.to_datetime(_STAMP_FORMAT, time_unit="us", strict=False)
        .dt.replace_time_zone("UTC").alias("ts"),
        kind.alias("kind"),
        event.alias("_event"),
        host,
        _col("source").str.strip_chars().alias("program"),
    ).with_columns(
        # a row without a readable time or event is no row (a damaged or foreign line)
        pl.when(pl.col("ts").is_null() | pl.col("_event").is_null())
        .then(pl.lit("unparsed")).otherwise("kind").alias("kind"),
        queue.alias("queue_id"),
        _bare_id(_col("message-id")).alias("message_id"),
    )
    kind_col = frame["kind"]
    parts = [frame.filter(kind_col == "unparsed").select("line_no", "kind",
                                                         pl.col("_raw").alias("raw"))]
    # each kind's fields, by the table's field group
    for group, read in (("facts", _facts), ("deliveries", _deliveries), ("members", _members)):
        parts.append(read(frame.filter(kind_col.is_in(_KINDS_OF[group]))))
    # each part in the events schema, so that stacking them copies nothing
    return pl.concat([conform(p).collect() for p in parts], rechunk=False)


def _facts(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows that stay one row: received (RECEIVE, DSN) and the exchange_* events."""
    received = pl.col("kind") == "received"
    ret = _col("return-path").str.strip_chars()
    sender = pl.when(ret == "<>").then(pl.lit("")).otherwise(
        pl.coalesce(_bare_id(ret), _col("sender-address").str.strip_chars()))
    ref = _col("reference").str.strip_chars()
    rcpt = _col("recipient-address").str.strip_chars()
    return frame.select(
        "ts", "host", "line_no", "kind", "queue_id", "message_id", "program",
        sender.alias("sender"),
        # RESOLVE, REDIRECT... name one recipient and the address it came from
        pl.when(~received & ~rcpt.str.contains(";", literal=True)).then(rcpt)
        .alias("recipient"),
        pl.when(~received).then(_col("related-recipient-address")).alias("orig_to"),
        _col("total-bytes").cast(pl.Int64, strict=False).alias("size"),
        _col("recipient-count").cast(pl.Int64, strict=False).alias("nrcpt"),
        pl.when(received).then(_endpoint(_col("client-hostname"), _col("client-ip")))
        .alias("client"),
        _col("message-subject").alias("subject"),
        # a RECEIVE made by an inbox rule or journaling names the message it came from;
        # a DSN names the message it reports on (kept as text: it is no reply)
        pl.when(received & (pl.col("_event") == "RECEIVE") & ref.str.contains(r"^<[^<>]+>$"))
        .then(ref).alias("refs"),
        pl.when(~received).then(_col("source-context"))
        .when(pl.col("_event") == "DSN").then(ref).alias("detail"),
    )


_COMMON = ("ts", "host", "line_no", "kind", "queue_id", "message_id", "program")


def _members(frame: pl.DataFrame) -> pl.DataFrame:
    """EXPAND: one expansion row per member of the group (a group may have thousands)."""
    members = frame.select(
        *_COMMON, _col("related-recipient-address").str.strip_chars().alias("orig_to"),
        _col("recipient-address").str.split(";").alias("recipient"),
    ).explode("recipient")
    return _tidy_recipients(members, frame["recipient-address"])


def _tidy_recipients(rows: pl.DataFrame, lists: pl.Series) -> pl.DataFrame:
    """Drop empty recipients, and strip spaces only when the lists hold any: a group of
    thousands explodes into thousands of rows, a pass over them is worth saving."""
    if lists.str.contains(" ", literal=True).any():
        rows = rows.with_columns(pl.col("recipient").str.strip_chars())
    return rows.filter(pl.col("recipient") != "")


def _deliveries(frame: pl.DataFrame) -> pl.DataFrame:
    """DELIVER, SEND, FAIL, DEFER: one delivery row per recipient of the ';'-joined list.

    A status list that does not pair one to one with the recipients (a reply text with a
    ';' of its own) is given whole to each recipient.
    """
    status_text = _col("recipient-status").str.strip_chars()
    # both lists split once into columns (an expression used twice would run twice);
    # the status list only before an SMTP reply code: "550 4.4.7 QUEUE.Expired;text" and
    # "...RecipNotFound; not found" are one status each
    frame = frame.with_columns(
        status_text.str.replace_all(r";\s*([245]\d\d[ -])", "\x1f${1}").str.split("\x1f")
        .alias("_sts"),
        _col("recipient-address").str.split(";").alias("_rcpts"))
    statuses, rcpts = pl.col("_sts"), pl.col("_rcpts")
    paired = statuses.list.len() == rcpts.list.len()
    source = _col("source-context")
    hop = pl.coalesce(
        source.str.extract(r"(?:queued as|Queued as) ([0-9A-Za-z]{5,})", 1),
        _short(source.str.extract(r"InternalId=\d+, Hostname=([^\],\s]+)", 1)) + ":"
        + source.str.extract(r"InternalId=(\d+)", 1),
    )
    origin = _col("message-info").str.extract(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z)", 1) \
        .str.to_datetime(_STAMP_FORMAT, time_unit="us", strict=False) \
        .dt.replace_time_zone("UTC")
    expired = status_text.str.contains("QUEUE.Expired", literal=True).fill_null(False)
    rows = frame.select(
        *_COMMON,
        rcpts.alias("recipient"),
        statuses.alias("_st"),
        paired.fill_null(False).alias("_paired"),
        status_text.alias("detail"),
        pl.when(expired).then(pl.lit("expired"))
        .otherwise(pl.col("_event").replace_strict(_STATUS, default=None)).alias("status"),
        _endpoint(_col("server-hostname"), _col("server-ip")).alias("relay"),
        pl.when(pl.col("_event").is_in(_SENDING)).then(hop).alias("next_queue_id"),
        ((pl.col("ts") - origin).dt.total_microseconds() / 1e6).alias("delay"),
    )
    # rows whose statuses pair with the recipients explode both lists; the others (most
    # DELIVER rows have no status) give the whole status text to every recipient, so its
    # code is read once per row, before the explode
    mask = rows["_paired"]
    paired_rows = rows.filter(mask).drop("detail").explode(["recipient", "_st"]) \
        .rename({"_st": "detail"}).with_columns(pl.col("detail").str.strip_chars()) \
        .with_columns(_dsn(pl.col("detail")))
    other_rows = rows.filter(~mask).drop("_st").with_columns(_dsn(pl.col("detail"))) \
        .explode("recipient")
    sub = pl.concat([paired_rows.drop("_paired"), other_rows.drop("_paired")],
                    how="vertical", rechunk=False)
    return _tidy_recipients(sub, frame["recipient-address"])


def _dsn(reply: pl.Expr) -> pl.Expr:
    """The enhanced status code in an SMTP reply ("550 5.1.1 ..." -> 5.1.1)."""
    return reply.str.extract(r"(?:^|\s)([245]\.\d{1,3}\.\d{1,3})(?:\s|$|[^\d.])", 1).alias("dsn")


def _segments(frame: pl.DataFrame, layout: _Layout) -> list[tuple[pl.DataFrame, _Layout]]:
    """Records grouped by the #Fields line in force (the header's, then any in the batch)."""
    fields = frame.filter(pl.col("raw").str.starts_with("#Fields:")).select("line_no", "raw")
    if not fields.height:
        return [(frame, layout)]
    cuts = fields["line_no"]
    seg = cuts.search_sorted(frame["line_no"], side="right")
    out = []
    for i in range(fields.height + 1):
        part = frame.filter(seg == i)
        if not part.height:
            continue
        if i == 0:
            out.append((part, layout))
            continue
        names = csvlog.header_fields(fields["raw"][i - 1][len("#Fields:"):].strip())
        own = _Layout(tuple(names), len(names) == len(FIELDS_2010))
        out.append((part, own))
    return out


def parse(lines: pl.DataFrame, ctx: ParseContext) -> pl.DataFrame:
    """Turn a batch of raw lines (columns raw, line_no) into the events frame."""
    lines = lines.select(pl.col("raw").fill_null("").str.strip_prefix("\ufeff"), "line_no")
    layout = _layout_of(tuple(ctx.head) or tuple(lines["raw"].head(200).to_list()))
    recs = csvlog.records(lines, start=pl.col("raw").str.contains(_START))
    header = csvlog.HEADER_RECORD
    parts = csvlog.side_parts(recs, "exchange_header")
    for part, seg_layout in _segments(recs.filter(header | pl.col("ok")), layout):
        rows = part.filter(~header)
        if rows.height:
            cols, bad = csvlog.table(rows, list(seg_layout.fields), _USED)
            parts.append(bad.with_columns(pl.lit("unparsed").alias("kind")))
            parts.append(tracking_events(cols, v2010=seg_layout.v2010,
                                         server=seg_layout.server))
    frame = pl.concat([conform(p).collect() for p in parts], rechunk=False)
    # Not finish(): its expressions over the stacked, unrechunked parts (casts of numbers
    # already typed, the raw mask: only unparsed parts hold raw) cost +40% on a storm day.
    # Exchange logs subjects decoded; a client's encoded-word one is decoded here.
    from detector.model.subjects import decode_rfc2047

    frame = outside_calendar_unparsed(frame)
    return frame.with_columns(pl.lit(ctx.source_file).alias("source_file"),
                              decode_rfc2047(frame["subject"]).alias("subject"))
