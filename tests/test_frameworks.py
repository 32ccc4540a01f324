"""The real runtime frameworks as callgate's clients: Pipecat 1.14 (``OpenAILLMService``
in a pipeline) and LiveKit Agents 1.8 (``openai.LLM.chat()`` and the agent loop with
its ``EndCallTool``, text mode, no room), each through its profile, against a scripted
upstream that rejects unknown fields as api.openai.com does.

Each test asserts what the TTS would get (exact text, no command markup), the exact
control events, and that every turn of the call, the goodbye included, is in
``GET /v1/calls/{id}``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import types
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.demo.scripted_upstream import OPENAI_FIELDS, ScriptedReply

from .test_runtimes import events_until_end, get_record, tool

pytest.importorskip("pipecat")
pytest.importorskip("livekit.agents")

WINDOW = {"after_hangup_s": 0.3}  # the goodbye request comes within milliseconds
HANGUP_IN_ONE_CHUNK = ScriptedReply(content=['Thanks for calling. <imsagent_hangup endword="Goodbye!"/>'])
END_CALL_TOOL = ScriptedReply(tool_calls=tool("end_call", {}), finish_reason="tool_calls")
GOODBYE = ScriptedReply(content=["Good", "bye!"])


def only_openai_fields(s: Any) -> None:
    for r in s.upstream.requests:
        assert set(r.body) <= OPENAI_FIELDS, r.body


# -- Pipecat ------------------------------------------------------------------------------

async def run_pipecat(base_url: str, call_id: str) -> tuple[list[str], list[dict[str, Any]]]:
    """A pipeline with no transport: user aggregator, OpenAILLMService, a collector in
    the TTS's place, assistant aggregator. Returns (text frames, end_call handler calls)."""
    from loguru import logger
    from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
    from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
    from pipecat.frames.frames import (
        EndFrame,
        Frame,
        LLMFullResponseEndFrame,
        LLMRunFrame,
        TextFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.llm_service import FunctionCallParams
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.workers.runner import WorkerRunner

    logger.remove()
    texts: list[str] = []
    handled: list[dict[str, Any]] = []
    responses_done = asyncio.Event()
    ends = 0

    class TTSPosition(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            nonlocal ends
            await super().process_frame(frame, direction)
            if isinstance(frame, TextFrame):
                texts.append(frame.text)
            if isinstance(frame, LLMFullResponseEndFrame):
                ends += 1
                if ends == 2:  # the reply with the hangup, then the goodbye
                    responses_done.set()
            await self.push_frame(frame, direction)

    llm = OpenAILLMService(
        api_key="runtime-key",
        base_url=base_url,
        settings=OpenAILLMService.Settings(model="gpt-4o"),
        default_headers={"X-Call-Id": call_id},
    )

    async def end_call(params: FunctionCallParams) -> None:
        handled.append({"name": params.function_name, "arguments": dict(params.arguments)})
        await params.result_callback({"status": "ending the call"})

    llm.register_function("end_call", end_call)
    tools = ToolsSchema(standard_tools=[FunctionSchema(name="end_call", description="End the phone call.", properties={}, required=[])])
    context = LLMContext(messages=[{"role": "user", "content": "That's all, thanks."}], tools=tools)
    agg = LLMContextAggregatorPair(context)
    worker = PipelineWorker(Pipeline([agg.user(), llm, TTSPosition(), agg.assistant()]), idle_timeout_secs=None, enable_rtvi=False)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    async def drive() -> None:
        await worker.queue_frame(LLMRunFrame())
        try:
            await asyncio.wait_for(responses_done.wait(), 10)
        finally:
            await worker.queue_frame(EndFrame())

    await asyncio.gather(runner.run(), drive())
    return texts, handled


@pytest.mark.parametrize(
    ("first", "source", "args"),
    [(HANGUP_IN_ONE_CHUNK, "text_command", {"endword": "Goodbye!"}), (END_CALL_TOOL, "tool_call", {})],
    ids=["text-command-in-one-chunk", "end_call-tool-call"],
)
async def test_pipecat_pipeline(stack: Any, first: ScriptedReply, source: str, args: dict[str, Any]) -> None:
    s = await stack([first, GOODBYE], strict=True, end_function=WINDOW)
    texts, handled = await run_pipecat(f"{s.url}/pipecat/v1", "pc-call-1")
    spoken = "".join(texts)
    # the text that came with the command in one chunk is spoken (it goes out in a chunk of its own)
    assert spoken == ("Thanks for calling. Goodbye!" if source == "text_command" else "Goodbye!")
    assert handled == [{"name": "end_call", "arguments": args}]
    events = await events_until_end(s.url, "pc-call-1")
    assert [(e["type"], e["source"]) for e in events] == [("hangup", source), ("call.ended", source)]
    record = await get_record(s.url, "pc-call-1")
    assert [t["spoken_text"] for t in record["turns"]] == [spoken.removesuffix("Goodbye!"), "Goodbye!"]
    assert record["end_reason"] == "agent_hangup"
    assert len(s.upstream.requests) == 2
    assert s.upstream.requests[1].body["messages"][-1]["role"] == "tool"  # Pipecat's tool result turn
    only_openai_fields(s)


# -- LiveKit Agents --------------------------------------------------------------------------

@contextlib.contextmanager
def livekit_job(room_sid: str) -> Iterator[list[Any]]:
    """A stand-in for the JobContext of a LiveKit room (what the plugin's inference
    headers and EndCallTool read), so the plugin sends its real X-LiveKit-* headers;
    yields the job calls EndCallTool made (add_shutdown_callback, shutdown)."""
    from livekit.agents import job as lk_job

    calls: list[Any] = []

    async def delete_room(*a: Any, **k: Any) -> None:
        calls.append(("delete_room",))

    stub = types.SimpleNamespace(
        job=types.SimpleNamespace(room=types.SimpleNamespace(sid=room_sid), id="AJ_test"),
        room=types.SimpleNamespace(isconnected=lambda: False),
        inference_headers={},
        add_shutdown_callback=lambda cb: calls.append(("add_shutdown_callback",)),
        shutdown=lambda reason="": calls.append(("shutdown", reason)),
        delete_room=delete_room,
        simulation_context=lambda: None,
        _telemetry_state=None,
    )
    token = lk_job._JobContextVar.set(stub)
    try:
        yield calls
    finally:
        lk_job._JobContextVar.reset(token)


async def test_livekit_llm_chat_reads_the_room_header(stack: Any) -> None:
    from livekit.agents.llm import ChatContext, function_tool
    from livekit.plugins import openai as lk_openai

    @function_tool
    async def end_call() -> None:
        """End the phone call."""

    s = await stack([HANGUP_IN_ONE_CHUNK, ScriptedReply(content=["Still there?"])], strict=True, end_function={"after_hangup_s": 30})
    model = lk_openai.LLM(model="gpt-4o", base_url=f"{s.url}/livekit/v1", api_key="runtime-key")
    ctx = ChatContext.empty()
    ctx.add_message(role="user", content="That's all, thanks.")
    deltas = []
    with livekit_job("RM_chat"):
        for _ in range(2):
            async with model.chat(chat_ctx=ctx, tools=[end_call]) as stream:
                deltas += [c.delta async for c in stream if c.delta is not None]
    await model.aclose()
    text = "".join(d.content or "" for d in deltas)
    calls = [(tc.name, tc.arguments) for d in deltas for tc in d.tool_calls or []]
    assert text == "Thanks for calling. Still there?"
    assert calls == [("end_call", "{}")]  # EndCallTool's schema has no arguments
    assert not any(d.content and d.tool_calls for d in deltas)
    # one call for the room, whatever the per-request session id
    sessions = {r.headers.get("x-livekit-session-id") or r.headers.get("X-LiveKit-Session-ID") for r in s.upstream.requests}
    assert len(sessions) == 2
    record = await get_record(s.url, "RM_chat")
    assert len(record["turns"]) == 2 and record["metadata"]["runtime_call_id"] == "RM_chat"
    only_openai_fields(s)


@pytest.mark.parametrize("first", [END_CALL_TOOL, HANGUP_IN_ONE_CHUNK], ids=["end_call-tool-call", "text-command"])
async def test_livekit_agent_loop_with_end_call_tool(stack: Any, first: ScriptedReply, caplog: pytest.LogCaptureFixture) -> None:
    from livekit.agents import Agent, AgentSession
    from livekit.agents.beta.tools import EndCallTool
    from livekit.plugins import openai as lk_openai

    s = await stack([first, GOODBYE], strict=True, end_function=WINDOW)
    model = lk_openai.LLM(model="gpt-4o", base_url=f"{s.url}/livekit/v1", api_key="runtime-key")
    caplog.set_level(logging.WARNING)
    async with AgentSession(llm=model) as session:
        await session.start(Agent(instructions="You are a phone agent.", tools=[EndCallTool()]))
        with livekit_job("RM_loop") as job_calls:
            result = session.run(user_input="That's all, bye.")
            await asyncio.wait_for(result, 15)
            closed = asyncio.Event()
            session.on("close", lambda ev: closed.set())
            await asyncio.wait_for(closed.wait(), 10)  # EndCallTool shuts the session down after the goodbye
    source = "tool_call" if first is END_CALL_TOOL else "text_command"
    items = [(ev.type, getattr(ev.item, "name", None)) for ev in result.events]
    tool_run = [("function_call", "end_call"), ("function_call_output", "end_call"), ("message", None)]
    assert items == (tool_run if source == "tool_call" else [("message", None), *tool_run])
    said = [ev.item.text_content for ev in result.events if ev.type == "message"]
    assert said == (["Goodbye!"] if source == "tool_call" else ["Thanks for calling. ", "Goodbye!"])
    assert ("shutdown", "user_initiated") in job_calls
    events = await events_until_end(s.url, "RM_loop")
    assert [(e["type"], e["source"]) for e in events] == [("hangup", source), ("call.ended", source)]
    record = await get_record(s.url, "RM_loop")
    assert [t["spoken_text"] for t in record["turns"]] == [("" if source == "tool_call" else "Thanks for calling. "), "Goodbye!"]
    assert json.loads(json.dumps(s.upstream.requests[1].body["messages"][-1]))["role"] == "tool"
    only_openai_fields(s)
