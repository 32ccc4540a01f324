"""callgate: an OpenAI-compatible streaming proxy for voice agents.

It relays chat completions between an agent runtime and its LLM, turns the model's
hangup/transfer control commands into control events for the call layer, and runs
the end function after each call. The import package is ``proxy``; the
distribution and console script are ``callgate``.

The house, lowest layer first (the data's path: a request comes in, the inspector
reads the reply, control events go out, the call ends, the steps run):

=================  ===================================================================
``proxy.core``     sans-IO: SSE, the command parser, commands and renderings, tool-call
                   assembly, the FunctionMap, the reply inspector, the call's state
                   machine, a chat request's checks, call identity, ids, JSON. Feed
                   input, get results: no asyncio, aiohttp, sqlite3, config.
``proxy.errors``   the exception tree and OpenAI's error shape
``proxy.config``   the YAML config as pydantic models; ``proxy.prompts``: prompts/
                   files; ``proxy.logs``: logging and masking; ``proxy.metrics``:
                   the Prometheus instruments
``proxy.profiles`` the runtime profiles (IMS, Vapi, ElevenLabs, LiveKit, Pipecat), resolved
``proxy.storage``  the database: typed records, SQL per aggregate, numbered migrations,
                   two engines
``proxy.outbound`` the one outbound HTTP POST helper (control events and steps);
                   ``proxy.telemetry``: OpenTelemetry spans (turns, attempts, steps),
                   a no-op when off
``proxy.calls``    the call domain: ``Call``, control events, the registry facade and
                   its parts (cache, turns, ending, sweeper, followers)
``proxy.endfn``    the end function: ``Conversation``, the durable pipeline, effects
                   and the sandbox recorder, ``when:`` conditions, the steps
``proxy.server``   the aiohttp edge: app wiring, the relay, the call API, control-event
                   delivery, the operator page
``proxy.demo``     ``callgate demo`` and the scripted upstream
``proxy.cli``      the ``callgate`` command
=================  ===================================================================

The import rule, written here once (``tests/test_layers.py`` reads it from this
docstring): a module imports only from its own package and from the layers listed
before its own; ``proxy.core`` imports nothing that does I/O or reads config, and
none of: asyncio, aiohttp, sqlite3, psycopg, socket, threading, yaml. The layers,
lowest first::

    0  core, errors
    1  config, prompts, logs, metrics
    2  profiles, storage, outbound, telemetry
    3  calls
    4  endfn
    5  server
    6  demo
    7  cli

What a user's end function needs is importable from here: ``from proxy import
Conversation, StepResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.7.0"

__all__ = ["Conversation", "StepResult", "__version__"]

if TYPE_CHECKING:
    from .endfn.conversation import Conversation
    from .endfn.steps.result import StepResult


def __getattr__(name: str) -> Any:
    """``Conversation`` and ``StepResult`` on first use, so importing ``proxy.core``
    does not load the end function (and aiohttp with it)."""
    if name == "Conversation":
        from .endfn.conversation import Conversation

        return Conversation
    if name == "StepResult":
        from .endfn.steps.result import StepResult

        return StepResult
    raise AttributeError(f"module 'proxy' has no attribute {name!r}")
