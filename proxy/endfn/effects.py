"""Side effects of end-function steps, in one place: HTTP POSTs, JSONL appends, LLM
clients. :class:`Effects` does them; :class:`Recorder` (the sandbox) writes down
what would have been done and answers as a receiver that accepts everything.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from pathlib import Path
from typing import Any

import aiohttp
from openai import AsyncOpenAI

from ..config import LLMConfig
from ..outbound import PostResult, post

__all__ = ["Effects", "Recorder", "current_step"]


# The step whose side effects are being made (set by the pipeline for each try).
current_step: contextvars.ContextVar[str] = contextvars.ContextVar("current_step", default="")


class Effects:
    """The real thing."""

    sandbox = False

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        timeout_s: float,
        auth: tuple[str, str] | None = None,
    ) -> PostResult:
        """POST ``body`` once (the pipeline retries whole steps)."""
        return await post(self.session, url, body, headers=headers, timeout_s=timeout_s, auth=auth)

    async def append_jsonl(self, path: str, record: Any) -> None:
        """Append one JSON line (in a worker thread)."""
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"

        def write() -> None:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            with p.open("a", encoding="utf-8") as f:
                f.write(line)

        await asyncio.to_thread(write)

    def llm(self, cfg: LLMConfig) -> AsyncOpenAI | None:
        """An official openai client for ``cfg`` (``None`` in the sandbox)."""
        return AsyncOpenAI(base_url=cfg.base_url, api_key=cfg.api_key or "none", timeout=cfg.timeout_s, max_retries=0)


class Recorder(Effects):
    """Records every side effect in ``records`` instead of doing it."""

    sandbox = True

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, auth: tuple[str, str] | None = None) -> PostResult:
        """Record the POST (its body as JSON when it parses) and answer 200."""
        text = body.decode("utf-8", "replace")
        try:
            shown: Any = json.loads(text)
        except ValueError:
            shown = text
        self.records.append(
            {"step": current_step.get(), "effect": "POST", "url": url, "headers": headers, "auth_user": auth[0] if auth else None, "body": shown}
        )
        return PostResult(ok=True, attempts=1, status=200)

    async def append_jsonl(self, path: str, record: Any) -> None:
        """Record the line instead of writing it."""
        self.records.append({"step": current_step.get(), "effect": "append", "path": path, "record": record})

    def llm(self, cfg: LLMConfig) -> AsyncOpenAI | None:
        """Record the LLM call and give no client: the step takes its fallback."""
        self.records.append({"step": current_step.get(), "effect": "LLM call skipped", "base_url": cfg.base_url, "model": cfg.model})
        return None
