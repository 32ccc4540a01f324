"""Fault tests: real ``callgate serve`` processes, real SQLite files, a webhook receiver
that fails on command, kill -9. Short versions run in ``make test``; ``make faults``
runs the long ones (``FAULTS=long``)."""
