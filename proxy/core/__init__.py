"""The sans-IO core: feed input, get results. No asyncio, aiohttp, sqlite3, network,
clock-driven waiting or config lookups; plain data in, frozen events out.

=================  ==========================================================
``sse``            incremental SSE decoder (``feed``/``close``), encoders
``parser``         the incremental text-command parser (``feed``/``close``)
``commands``       the normalized control command, validation, renderings
``tool_calls``     streamed tool-call assembly
``function_map``   the FunctionMap: LLM function names <-> built-in functions
``analyzer``       per-choice analysis: text, commands, tool calls (no JSON)
``render``         one renderer per output mode (``passthrough`` changes nothing)
``inspector``      one reply: SSE events in, bytes out and commands found
``call_id``        which call a request belongs to; dotted paths into JSON
``ids``            unique ids
``json_codec``     JSON for the hot path (orjson when installed)
=================  ==========================================================

May import: the standard library, lxml, ``proxy.core`` itself.
"""

__all__: list[str] = []
