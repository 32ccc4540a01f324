"""callgate: an OpenAI-compatible streaming proxy for voice agents.

It relays chat completions between an agent runtime and its LLM, turns the model's
hangup/transfer control commands into control events for the call layer, and runs
the end function after each call. The import package is ``proxy``; the
distribution and console script are ``callgate``.

The house, lowest layer first (the data's path: a request comes in, the inspector
reads the reply, control events go out, the call ends, the steps run):

=================  ===================================================================
``proxy.core``     sans-IO: SSE, the command parser, commands and renderings, tool-call
                   assembly, the FunctionMap, the reply inspector, call identity, ids,
                   JSON. Feed input, get results: no asyncio, aiohttp, sqlite3, config.
``proxy.errors``   the exception tree and OpenAI's error shape
``proxy.config``   the YAML config as pydantic models; ``proxy.prompts``: prompts/
                   files; ``proxy.logs``: logging and masking; ``proxy.metrics``:
                   the Prometheus instruments
``proxy.profiles`` the runtime profiles (IMS, Vapi, ElevenLabs, LiveKit, Pipecat), resolved
``proxy.storage``  the database: call records, end-function jobs, deliveries
``proxy.outbound`` the one outbound HTTP POST helper (control events and steps)
``proxy.calls``    the call domain: ``Call``, ``Turn``, control events, the registry
                   that owns a call's lifecycle, the one-hangup-per-call policy,
                   outcome rules
``proxy.endfn``    the end function: ``Conversation``, the durable pipeline, effects
                   and the sandbox recorder, ``when:`` conditions, the steps
``proxy.server``   the aiohttp edge: app wiring, the relay, the call API, control-event
                   delivery
``proxy.demo``     ``callgate demo`` and the scripted upstream
``proxy.cli``      the ``callgate`` command
=================  ===================================================================

The import rule, written once here and enforced by ``tests/test_layers.py``: a
module imports only from its own package and from layers listed above it in this
order: core and errors; config, prompts, logs and metrics; profiles, storage and outbound; calls;
endfn; server; demo; cli. ``proxy.core`` imports nothing but the standard
library (no asyncio, sqlite3), lxml, and itself.

What a user's end function needs is importable from here: ``from proxy import
Conversation, StepResult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
