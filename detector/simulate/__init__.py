"""Deterministic mail-log simulator: sites, traffic scenarios and log renderers.

The core (scenario, delivery, traffic) is format-neutral; ``postfix`` renders it as
mail.log lines. Typical use::

    rng = random.Random(1)
    site = make_site(rng, "nhs.example", lists={"all.staff": 3000})
    msgs, _ = background(site, rng, utc(2016, 11, 14), messages=2000)
    storm_msgs, truth = storm(site, rng, utc(2016, 11, 14, 9, 58), repliers=40)
    write_postfix("mail.log", site, msgs + storm_msgs, seed=1)
"""

from detector.simulate.delivery import Plan, count_final, expand, plan_delivery
from detector.simulate.exchange import (
    ExchangeRenderer,
    render_exchange,
    render_m365,
    write_exchange,
    write_m365,
)
from detector.simulate.exim import EximRenderer, render_exim, write_exim
from detector.simulate.mailman import MailmanRenderer, render_mailman, write_mailman
from detector.simulate.output import read_lines, write_lines
from detector.simulate.postfix import PostfixRenderer, render_postfix, write_postfix
from detector.simulate.scenario import Batch, Delivery, Message, Site, ensure_list, make_site
from detector.simulate.sendmail import SendmailRenderer, render_sendmail, write_sendmail
from detector.simulate.stamps import Stamper, utc
from detector.simulate.traffic import background, busy_small_thread, newsletter, storm

__all__ = [
    "Batch", "Delivery", "ExchangeRenderer", "EximRenderer", "MailmanRenderer", "Message",
    "Plan", "PostfixRenderer", "SendmailRenderer", "Site", "Stamper", "background",
    "busy_small_thread", "count_final", "ensure_list", "expand", "make_site", "newsletter",
    "plan_delivery", "read_lines", "render_exchange", "render_exim", "render_m365",
    "render_mailman", "render_postfix", "render_sendmail", "storm", "utc", "write_exchange",
    "write_exim", "write_lines", "write_m365", "write_mailman", "write_postfix",
    "write_sendmail",
]
