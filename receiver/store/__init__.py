"""The incident store: one interface, backed by Redis or by an embedded in-process server.

Both backends run the same Lua scripts (``lua/``), so they behave identically by
construction; the contract suite in ``tests/store`` holds them to it.
"""

from __future__ import annotations

from receiver.store.base import (
    AlertGroup,
    Annotation,
    Claim,
    CommitOutcome,
    GroupStore,
    IngestOutcome,
    PlacedAlert,
    StoreSettings,
)
from receiver.store.urls import open_store

__all__ = [
    "AlertGroup",
    "Annotation",
    "Claim",
    "CommitOutcome",
    "GroupStore",
    "IngestOutcome",
    "PlacedAlert",
    "StoreSettings",
    "open_store",
]
