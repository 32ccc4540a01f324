"""The aiohttp edge: everything that speaks HTTP to the runtime and the call layer.

=============  ==============================================================
``app``        the application: routes, the OpenAI-shaped error middleware,
               start and stop of the shared services
``relay/``     ``POST /v1/chat/completions`` and ``GET /v1/models``: the request
               read once, the attempts raced across the pool, the reply, the stream
``doors/``     the front doors: Retell's custom LLM and ConversationRelay (one session
               over their WebSockets), OpenAI's SIP calls (a webhook and a sideband)
``call_api``   the call layer's API: events (SSE), end, state, the call record
``delivery``   control events to ``control.webhook.url``, durable and in order
``admin``      the operator page (``ui/``) and its API
``auth``       API keys and scopes (``@requires``)
``scrape``     ``GET /metrics`` and ``server.metrics_port``
``workers``    ``serve --workers N``: one listening socket per worker
``openapi``    ``GET /openapi.json`` (``openapi.json``)
``bodies``     reading request bodies (size limit, JSON objects), JSON answers
``services``   the objects one running server shares between handlers
``pool``       the upstream pool: its entries, health, which upstream is next
``access``     the access log and each request's log context
``drain``      the replies in flight, given ``server.drain_s`` on SIGTERM
``ready``      ``GET /readyz``: the database answers, each profile has an upstream
``handoff``    the listening socket, handed to the server that replaces this one
``reload``     SIGHUP: the config file read again, put in place for the next request
=============  ==============================================================

What it may import: the import rule in :mod:`proxy`.
"""

__all__: list[str] = []
