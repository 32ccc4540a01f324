"""No blocking work on a serving process's event loop (issue 27, bug 8): the admin
sandbox opens and closes its throwaway SQLite store, a SIGHUP reads and validates
the config file and its prompt files, and a ``python`` step imports its module, each
off the loop's thread. Each test records the thread that ran the real call (a spy
around it, nothing replaced) and compares it with the loop's."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import PythonStep, parse_config
from proxy.endfn.conversation import Conversation
from proxy.endfn.effects import Recorder
from proxy.endfn.sandbox import run_sandbox
from proxy.endfn.steps import python as python_step
from proxy.server.app import running
from proxy.server.reload import reload
from proxy.server.services import SERVICES
from proxy.storage.sqlite import SqliteStore


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, seen: list[tuple[str, int]]) -> None:
    """Wrap ``owner.name`` so that each call appends ``(name, thread id)`` to ``seen``, then runs it."""
    real: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kw: Any) -> Any:
        seen.append((name, threading.get_ident()))
        return real(*args, **kw)

    monkeypatch.setattr(owner, name, wrapper)


async def test_the_sandbox_opens_and_closes_its_store_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []
    for name in ("_connect", "migrate", "close_sync"):  # sqlite connect and pragmas; flock and migrations; WAL checkpoint
        spy(monkeypatch, SqliteStore, name, seen)
    config = parse_config({"end_function": {"steps": [{"name": "tags", "kind": "outcome", "tags": ["x"]}]}})
    report = await run_sandbox(config, {"id": "rec-1", "end_reason": "agent_hangup", "events": [], "transcript": []})
    assert [s["status"] for s in report["steps"]] == ["done"]
    assert {name for name, _ in seen} == {"_connect", "migrate", "close_sync"}
    assert [name for name, thread in seen if thread == threading.get_ident()] == []


async def test_a_reload_reads_and_validates_off_the_loop_and_applies_on_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Be brief.")
    data: dict[str, Any] = {"storage": {"path": str(tmp_path / "cg.db")}}
    async with running(parse_config(data), host="127.0.0.1", port=0) as (app, _url):
        s = app[SERVICES]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({**data, "front_doors": {"retell": {"system_prompt_file": str(prompt)}}}))
        seen: list[tuple[str, int]] = []
        spy(monkeypatch, yaml, "safe_load", seen)
        real_read = Path.read_text

        def read_text(self: Path, *args: Any, **kw: Any) -> str:
            if self == prompt:
                seen.append(("prompt", threading.get_ident()))
            return real_read(self, *args, **kw)

        monkeypatch.setattr(Path, "read_text", read_text)
        assert await reload(s, str(cfg)) is True
        assert {name for name, _ in seen} == {"safe_load", "prompt"}
        assert [name for name, thread in seen if thread == threading.get_ident()] == []
        assert s.config.front_doors.retell.system_prompt == "Be brief."  # applied


def _conversation() -> Conversation:
    now = datetime.now(UTC)
    return Conversation(id="c1", state={}, transcript=[], events=[], end_reason="agent_hangup", started_at=now, ended_at=now)


async def test_a_python_step_imports_its_module_once_off_the_loop_and_again_after_a_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tries import the module once, in a worker thread; after a reload
    (:func:`~proxy.endfn.steps.python.forget`, which SIGHUP calls) an unchanged file
    is not imported again, an edited one is and its new function runs."""
    imports = tmp_path / "imports.txt"
    module = tmp_path / "cg_off_loop_hook.py"
    source = (
        "import threading\n"
        f"with open({str(imports)!r}, 'a') as f:\n"
        "    f.write(f'{{threading.get_ident()}}\\n')\n\n"
        "def end_function(conv):\n"
        "    return {version!r}\n"
    )
    module.write_text(source.format(version="one"))
    monkeypatch.syspath_prepend(str(tmp_path))
    step = PythonStep(name="hook", kind="python", function="cg_off_loop_hook:end_function")
    try:
        outputs = [(await python_step.run(step, _conversation(), Recorder())).output for _ in range(2)]
        assert outputs == ["one", "one"]
        threads = imports.read_text().split()
        assert len(threads) == 1 and int(threads[0]) != threading.get_ident()
        python_step.forget()  # what a reload does: the file is unchanged, nothing is imported again
        assert (await python_step.run(step, _conversation(), Recorder())).output == "one"
        assert len(imports.read_text().split()) == 1
        module.write_text(source.format(version="two") + "# edited\n")  # another size: no stale .pyc
        python_step.forget()
        assert (await python_step.run(step, _conversation(), Recorder())).output == "two"
        threads = imports.read_text().split()
        assert len(threads) == 2 and int(threads[1]) != threading.get_ident()
    finally:
        sys.modules.pop("cg_off_loop_hook", None)
        python_step.forget()
