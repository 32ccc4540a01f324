"""Schema v2: jobs and deliveries indexed by ``updated_at``, so the operator page's
change stream sees every move of a step or a delivery cheaply."""

from __future__ import annotations

from ..db import Conn

__all__ = ["DESCRIPTION", "VERSION", "apply"]

VERSION = 2
DESCRIPTION = "jobs and deliveries indexed by updated_at: the operator page sees every move cheaply"


def apply(c: Conn) -> None:
    """Add the two indexes."""
    c.execute("CREATE INDEX IF NOT EXISTS deliveries_by_update ON deliveries (updated_at)")
    c.execute("CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs (updated_at)")
