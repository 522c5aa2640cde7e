"""docs/operations.md and docs/security.md stay true to the code: every metric and every limit is listed."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from chatsvc.ops import metrics
from chatsvc.settings import FIELDS

DOCS = Path(__file__).parents[2] / "docs"


def test_every_metric_is_in_the_operations_table() -> None:
    documented = set(re.findall(r"^\| `(chatsvc_[a-z_]+)` \|", (DOCS / "operations.md").read_text(), re.M))
    defined = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram):
            name = value._name  # noqa: SLF001 - prometheus-client keeps the base name here
            defined.add(f"{name}_total" if isinstance(value, Counter) else name)
    assert defined and defined == documented


def test_every_limit_setting_is_in_the_security_table() -> None:
    limits = re.search(r"^## Limits\n(.*?)^## ", (DOCS / "security.md").read_text(), re.S | re.M)
    assert limits
    wanted = {f.env for f in FIELDS if f.name in ("max_frame_bytes", "max_message_chars", "rate_per_second",
                                                  "rate_burst", "connect_rate", "visitor_message_rate",
                                                  "ip_message_rate", "contact_rate", "rate_limit_exempt")}
    missing = {env for env in wanted if env not in limits.group(1)}
    assert not missing, missing
