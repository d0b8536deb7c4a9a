"""TLS for every outbound client: the system's CAs, or a private CA bundle (``ca_file``)."""

from __future__ import annotations

import ssl
from pathlib import Path


def ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """Verify against the system's CAs, or against ``ca_file`` alone when set."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
