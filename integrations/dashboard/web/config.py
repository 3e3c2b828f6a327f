"""What the web app needs to know, as plain values (stream/dashboard_main.py builds it from DashboardSettings)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class WebConfig:
    timezone: str = "UTC"
    idle_timeout_s: float = 1800.0
    cookie_secure: bool = False
    login_attempts: int = 5
    login_window_s: float = 300.0
    # Signs the login form's CSRF token (before a session exists); random per start when empty.
    form_secret: bytes = b""
    # Keys the reviewers' pseudonyms on the adjudications topic (HMAC of the account name; docs/SPEC.md §13.3).
    identity_secret: str = ""
    # Live updates: how often the event stream asks the store what changed.
    poll_interval_s: float = 0.25
    page_size: int = 50
    # Named in /healthz (the consumer group), so a probe knows it reached this dashboard, as the worker's and the
    # sink's name theirs.
    app: str = "twiwatch-dashboard"
    # (ok, reasons) of what the store cannot see: the Kafka consumer's state, from the process that runs it.
    consumer_health: Callable[[], tuple[bool, str]] = field(default=lambda: (True, "no consumer in this process"))
