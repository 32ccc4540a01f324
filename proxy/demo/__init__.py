"""``callgate demo`` and the scripted upstream it (and the tests and benchmarks) use.

``run``: the demo call; ``sip_demo``: a speech-to-speech call over SIP, hung up, its
end function run; ``cluster``: the same call through three instances on
PostgreSQL behind nginx (``--cluster``); ``scripted_upstream``: an OpenAI-compatible
LLM on loopback that answers from a script, the one the demo, the tests and the
benchmarks share; ``behaviours``: what it answers, as data (delays, pieces, stalls,
cuts, status codes) and the bytes it writes; ``scripted_openai``: OpenAI's SIP side
(REST, sideband, signed webhooks) on loopback, playing ``sip_scripts``; ``nginx`` and ``pgtemp``: a throwaway
nginx and PostgreSQL server (the cluster demo, the tests, ``make bench``). What it
may import: the import rule in :mod:`proxy`.
"""

__all__: list[str] = []
