"""Durable storage: call records, end-function jobs and control-event deliveries.

``sqlite``: the embedded SQLite backend (WAL), the default.

May import: ``proxy.core``, ``proxy.errors``. Records go in and out as plain
JSON-ready dicts; storage knows nothing of calls, steps or HTTP.
"""

from .sqlite import (
    TERMINAL,
    DeliveryStatus,
    Job,
    JobStatus,
    Storage,
    end_function_summary,
)

__all__ = ["TERMINAL", "DeliveryStatus", "Job", "JobStatus", "Storage", "end_function_summary"]
