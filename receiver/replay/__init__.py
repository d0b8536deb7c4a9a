"""``journey-receiver replay``: last week's alerts through this receiver's own code.

``history.py`` reads Prometheus' ``ALERTS`` into firing intervals, ``batches.py`` turns
them into the webhook batches Alertmanager would have sent, ``drive.py`` sends those
through the receiver's ingest and decisions on a virtual clock, on a redis-server of the
replay's own (``server.py``), the embedded ``memory://`` store, or any Redis under a scratch
key prefix deleted at the end (``scratch.py``),
``context.py`` gives the decisions their KPIs at their virtual time (``--context``),
``report.py`` counts incidents, pages and blips per journey and priority and compares two
journey files, ``settings.py`` reads the config without its secrets.
"""

from __future__ import annotations

from receiver.replay.batches import Route
from receiver.replay.history import Firing, HistoryError, read_firings
from receiver.replay.report import Diff, Report, as_text, diff
from receiver.replay.run import replay, route_for
from receiver.replay.settings import replay_settings

__all__ = [
    "Diff",
    "Firing",
    "HistoryError",
    "Report",
    "Route",
    "as_text",
    "diff",
    "read_firings",
    "replay",
    "replay_settings",
    "route_for",
]
