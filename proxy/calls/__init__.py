"""The call domain: what a call is and the one place its lifecycle changes.

=============  ==============================================================
``model``      ``Call`` (its state machine: :mod:`proxy.core.lifecycle`), ``Turn``,
               the built-in end reasons
``events``     control events (one pydantic model per kind)
``registry``   ``CallRegistry``: the facade the server calls; the
               one-hangup-per-call policy the inspector asks
``cache``      the calls in memory: LRU, generations, ownership
``turns``      a turn's beginning, its commands as control events, its end; limits
``ending``     ending once, the goodbye window, state patches
``sweeper``    heartbeat, recovery, due ends, retention
``followers``  SSE wake-ups
``tasks``      background work, drained on stop
``outcome``    outcome rules: tags for an ended call
=============  ==============================================================

Handlers never change a ``Call``: they call the registry, and only this package
moves a call's state (``Call.move``).
"""

__all__: list[str] = []
