"""The sans-IO core: feed input, get results. No asyncio, aiohttp, sqlite3, network,
clock-driven waiting or config lookups; plain data in, frozen events out.

========================  ==========================================================
``sse``                   incremental SSE decoder (``feed``/``close``), encoders
``parser``                the incremental text-command parser (``feed``/``close``)
``commands``              the normalized control command, validation, renderings
``tool_calls``            streamed tool-call assembly, every provider's delta shape
``thinking``              ``<think>…</think>`` in content told apart from speech
``text_tools``            tool calls written as text (vLLM's forms), one module per form
``phrases``               goodbye phrases: does a reply's speech end with one
``function_map``          the FunctionMap: LLM function names <-> built-in functions
``analyzer``              per-choice analysis: text, commands, tool calls (no JSON)
``render``                one renderer per output mode (``passthrough`` changes nothing)
``inspector``             one reply: SSE events in, typed outputs out (each JSON decoded once)
``settings``              what the inspector is told; the error it raises
``inspected``             what the inspector holds per choice and tells of choice 0 after
``outputs``               the inspector's outputs (forwarded, rewritten, speech, commands)
                          and the stages after it: SSE encoding, continuations
``reply``                 a reply's state machine: states, events, actions, one table; the
                          only writer of a turn's status and its attempts' outcomes
``deltas``                what a delta becomes when the inspector changes it
``capped``                text kept up to a bound, with a mark of what was cut
``gaps``                  dead air: the longest silence between speakable pieces
``lifecycle``             a call's state machine: states, events, actions, one table
``chat``                  a chat completion request, read and checked once
``json_body``             a request body as a JSON object: depth, surrogates
``profile``               a runtime profile, resolved: call ids, metadata, settings
``call_id``               which call a request belongs to; dotted paths into JSON
``routing``               the upstream pool: health, retries, usage and cost, attempt bodies
``merge``                 RFC 7386 JSON merge patch
``frames``                WebSocket front doors' frames read as JSON objects
``retell``                Retell's custom LLM protocol: frames, its sans-IO connection
``conversation_relay``    ConversationRelay frames, its sans-IO connection, TwiML
``door``                  what every front door's connection says to its session, and back;
                          the transcript a platform does not keep
``openai_sip/``           OpenAI's speech-to-speech SIP calls: webhook, accept, sideband
                          events, the call's controller (a table), turns, cost
``backoff``               the wait before a retry
``ago``                   durations as operators type them (30m, 2h, 1d)
``ids``                   unique ids
``json_codec``            JSON for the hot path (orjson when installed)
========================  ==========================================================

What it may import: the import rule in :mod:`proxy` (the standard library, lxml,
itself).
"""

__all__: list[str] = []
