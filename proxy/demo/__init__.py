"""``callgate demo`` and the scripted upstream it (and the tests and benchmarks) use.

``run``: the demo call; ``scripted_upstream``: an OpenAI-compatible LLM on loopback
that answers from a script. May import every layer.
"""

__all__: list[str] = []
