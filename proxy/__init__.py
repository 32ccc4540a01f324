"""callgate: an OpenAI-compatible streaming proxy for voice agents.

It relays chat completions between an agent runtime and its LLM, turns the model's
hangup/transfer control commands into control events for the call layer, and runs
the end function after each call. The import package is ``proxy``; the
distribution and console script are ``callgate``.
"""

__version__ = "0.1.0"
