"""The aiohttp edge: everything that speaks HTTP to the runtime and the call layer.

=============  ==============================================================
``app``        the application: routes, the OpenAI-shaped error middleware,
               start and stop of the shared services
``relay``      ``POST /v1/chat/completions`` and ``GET /v1/models``
``call_api``   the call layer's API: events (SSE), end, state, the call record
``delivery``   control events to ``control.webhook.url``, durable and in order
``bodies``     reading request bodies (size limit, JSON objects)
``services``   the objects one running server shares between handlers
=============  ==============================================================

May import every layer below it: core, errors, config, prompts, logs, storage,
outbound, calls, endfn.
"""

__all__: list[str] = []
