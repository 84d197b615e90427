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
from detector.simulate.output import read_lines, write_lines
from detector.simulate.postfix import PostfixRenderer, render_postfix, write_postfix
from detector.simulate.scenario import Batch, Delivery, Message, Site, ensure_list, make_site
from detector.simulate.stamps import Stamper, utc
from detector.simulate.traffic import background, busy_small_thread, newsletter, storm

__all__ = [
    "Batch", "Delivery", "Message", "Plan", "PostfixRenderer", "Site", "Stamper",
    "background", "busy_small_thread", "count_final", "ensure_list", "expand", "make_site",
    "newsletter", "plan_delivery", "read_lines", "render_postfix", "storm", "utc",
    "write_lines", "write_postfix",
]
