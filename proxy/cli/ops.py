"""What the operations commands print: calls, end-function jobs, control-event
deliveries, and the profiles ``callgate check`` shows. Plain data in, text out."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ..core.ago import ago
from ..core.profile import Profile
from ..storage import Delivery, Job

__all__ = ["calls_list", "calls_show", "deliveries_list", "jobs_list", "parse_since", "profiles_text", "tail_line"]



def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``2h``, ``1d``, ``45s`` ago, or an ISO 8601 time -> Unix seconds.
    Raises ``ValueError``."""
    now = time.time() if now is None else now
    since = ago(text, now)
    if since is not None:
        return since
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def calls_list(rows: list[dict[str, Any]]) -> str:
    """``calls list``: rows of :func:`proxy.storage.ops.list_calls`."""
    out = [f"{'call id':<36} {'status':<7} {'started (UTC)':<19} {'ended (UTC)':<19} {'end reason':<18} steps"]
    for r in rows:
        steps = ", ".join(f"{n} {st}" for st, n in sorted(r["jobs"].items())) or "-"
        out.append(f"{r['key']:<36} {r['status']:<7} {_when(r['started_at']):<19} {_when(r['ended_at']):<19} {str(r['end_reason'] or '-'):<18} {steps}")
    out.append(f"({len(rows)} call(s))")
    return "\n".join(out)


def calls_show(record: dict[str, Any], *, as_json: bool) -> str:
    """One stored call record (:meth:`proxy.storage.records.CallRecord.to_json` shape)
    as ``callgate calls show`` prints it: indented JSON with ``as_json``, else a
    summary, the transcript, control events and end-function steps, one per line."""
    if as_json:
        return json.dumps(record, ensure_ascii=False, indent=2, default=str)
    out = [
        f"call {record.get('key') or record['id']}  status {record.get('status')}",
        f"  started {record.get('started_at')}  ended {record.get('ended_at') or '-'}  reason {record.get('end_reason') or '-'} ({record.get('end_source') or '-'})",
        f"  state {json.dumps(record.get('state') or {}, ensure_ascii=False)}",
        "  transcript:",
    ]
    out += [f"    {t['role']:>9}: {t['text']}" for t in record.get("transcript") or []]
    out.append("  control events:")
    for e in record.get("events") or []:
        detail = {k: e[k] for k in ("callee", "endword", "reason") if e.get(k)}
        out.append(f"    {e['seq']}. {e['type']} ({e['source']}) {json.dumps(detail, ensure_ascii=False)}")
    ef = record.get("end_function")
    if ef:
        out.append(f"  end function: {ef['status']}")
        for j in ef["steps"]:
            extra = f"  error: {j['last_error']}" if j["last_error"] else ""
            code = f" HTTP {j['response_code']}" if j["response_code"] else ""
            out.append(f"    job {j['id']} {j['step']} ({j['kind']}): {j['status']}, {j['attempts']} attempt(s){code}{extra}")
    return "\n".join(out)


def jobs_list(jobs: list[Job]) -> str:
    """``jobs list``."""
    out = [f"{'job':>6} {'call id':<36} {'step':<16} {'kind':<10} {'status':<8} {'tries':>5}  last error"]
    for j in jobs:
        out.append(f"{j.id:>6} {j.call_key:<36} {j.step:<16} {j.kind:<10} {j.status:<8} {j.attempts:>5}  {j.last_error or ''}")
    out.append(f"({len(jobs)} job(s))")
    return "\n".join(out)


def deliveries_list(deliveries: list[Delivery], counts: dict[str, int]) -> str:
    """``deliveries list``: newest first, then the counts by status."""
    out = [f"{'event':<30} {'call id':<36} {'seq':>4} {'type':<16} {'status':<8} {'tries':>5}  last error"]
    for d in deliveries:
        out.append(f"{d.event_id:<30} {d.call_key:<36} {d.seq:>4} {d.type:<16} {d.status:<8} {d.attempts:>5}  {d.last_error or ''}")
    totals = ", ".join(f"{n} {st}" for st, n in sorted(counts.items())) or "none"
    out.append(f"({len(deliveries)} shown; in all: {totals})")
    return "\n".join(out)


_EVENT_FIELDS = ("source", "function", "reason", "count", "endword", "caller", "callee", "msg", "spoken")


def _short(text: str, n: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def tail_line(item: dict[str, Any]) -> str:
    """One line of ``calls tail`` for an item of :func:`proxy.storage.ops.tail`
    (unmasked: the caller masks it as log lines are)."""
    when = datetime.fromtimestamp(item["at"], UTC).strftime("%H:%M:%S.%f")[:-3]
    if item["kind"] == "turn":
        ms = f"{item['ttft_ms']:.0f}/{item['duration_ms']:.0f} ms" if item["ttft_ms"] is not None and item["duration_ms"] is not None else "-"
        said = f"{_short(item['user_text'], 60)!r} -> {_short(item['spoken_text'])!r}"
        return f"{when} {item['call_id']} turn {item['idx']} {item['status']} {ms} {said}"
    event = item["event"]
    fields = " ".join(f"{k}={_short(event[k], 40)!r}" for k in _EVENT_FIELDS if event.get(k) not in (None, "", {}))
    return f"{when} {item['call_id']} #{item['seq']} {event.get('type')} {fields}".rstrip()


def profiles_text(profiles: dict[str, Profile], default: str) -> str:
    """Each profile's effective settings (``callgate check``)."""
    out = []
    for name, profile in profiles.items():
        d = profile.describe()
        path = "/v1 and /" + name + "/v1" if name == default else "/" + name + "/v1"
        out.append(f"profile {name}  (base URL {path})")
        out.append(f"  output {d['output']}, speak_closing {d['speak_closing']}")
        out.append(f"  call id from: {', '.join(d['call_id']) or '-'}")
        out.append(f"  never upstream: {', '.join(d['drop_fields']) or '-'}")
        for key, sources in d["metadata"].items():
            out.append(f"  metadata.{key} from: {', '.join(sources) or '-'}")
        for entry in d["function_map"]:
            out.append(f"  FunctionMap: {json.dumps(entry, ensure_ascii=False)}")
    return "\n".join(out)
