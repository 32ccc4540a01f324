"""Fuzzing the sans-IO core (``make fuzz``; a short run is part of ``make test``).

``targets``: one fuzz target per incremental decoder (SSE decoder, command parser,
tool-call assembler, reply inspector), each a function of ``bytes``; ``engine``: a
seeded mutation driver; ``atheris_main``: the same targets under atheris (libFuzzer,
coverage-guided); ``run``: the command line (``python -m tests.fuzz.run``).
"""
