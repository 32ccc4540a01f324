"""``callgate end-function test``: run the configured steps against a recorded call.

Every side effect is replaced by a :class:`~proxy.effects.Recorder` (``--live``:
sent for real), each step gets one try, and the report says step by step what
would have been sent where. The steps run through the same pipeline as in
production (``after``, ``when``, timeouts), on a throwaway database. ``python``
steps do run: they see ``conv.sandbox`` true and should skip their own side
effects then. A recorded call comes from ``callgate calls show ID --json``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ..config import Config
from ..storage import OpenMode, ops, open_store
from .effects import Effects, Recorder
from .pipeline import Pipeline

__all__ = ["format_report", "run_sandbox"]


async def run_sandbox(config: Config, record: dict[str, Any], *, live: bool = False, timeout_s: float = 120) -> dict[str, Any]:
    """``{"call_id", "live", "steps": [{"step", "kind", "status", "error", "output", "effects": [...]}]}``."""
    record = {k: v for k, v in record.items() if k not in ("end_function", "status")}
    record.setdefault("id", "sandbox-call")
    steps_cfg = config.end_function.model_copy(deep=True)
    for step in steps_cfg.steps:
        step.retry.attempts = 1
    async with aiohttp.ClientSession() as session:
        effects: Effects = Effects(session) if live else Recorder()
        with tempfile.TemporaryDirectory(prefix="callgate-sandbox-") as tmp:
            # connect, pragmas, flock, migrations: off the event loop (the admin API runs this in a serving process)
            store = await asyncio.to_thread(open_store, Path(tmp) / "sandbox.db", mode=OpenMode.SERVE)
            await store.start()
            pipeline = Pipeline(store, steps_cfg, effects, me="sandbox")
            key = await store.write(ops.put_record, record, pipeline.step_specs, time.time())
            runner = asyncio.create_task(pipeline.run())
            try:
                jobs = await pipeline.wait_call(key, timeout_s) if steps_cfg.steps else []
            finally:
                await pipeline.stop(0)
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
                await store.close()
    recorded = effects.records if isinstance(effects, Recorder) else []
    return {
        "call_id": record["id"],
        "live": live,
        "steps": [
            {
                "step": j.step,
                "kind": j.kind,
                "status": str(j.status),
                "error": j.last_error,
                "output": j.output,
                "effects": [{k: v for k, v in r.items() if k != "step"} for r in recorded if r["step"] == j.step],
            }
            for j in jobs
        ],
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as text, step by step."""
    mode = "LIVE: side effects were sent" if report["live"] else "sandbox: nothing was sent"
    lines = [f"end function for call {report['call_id']} ({mode})", ""]
    for i, step in enumerate(report["steps"], 1):
        lines.append(f"{i}. {step['step']} ({step['kind']}): {step['status']}" + (f" - {step['error']}" if step["error"] else ""))
        for eff in step["effects"]:
            if eff["effect"] == "POST":
                lines.append(f"   would POST {eff['url']}")
                for k, v in eff["headers"].items():
                    lines.append(f"     {k}: {v}")
                body = json.dumps(eff["body"], ensure_ascii=False, default=str)
                lines.append(f"     body: {body[:600]}{'...' if len(body) > 600 else ''}")
            elif eff["effect"] == "append":
                lines.append(f"   would append to {eff['path']}: {json.dumps(eff['record'], ensure_ascii=False)[:600]}")
            else:
                lines.append(f"   {eff['effect']}: {eff.get('model')} at {eff.get('base_url')}")
        if step["output"] is not None:
            out = json.dumps(step["output"], ensure_ascii=False, default=str)
            lines.append(f"   output: {out[:600]}{'...' if len(out) > 600 else ''}")
        lines.append("")
    return "\n".join(lines)
