"""The call domain: what a call is and the one place its lifecycle changes.

=============  ==============================================================
``model``      ``Call``, ``Turn``, their statuses and the built-in end reasons
``events``     control events (one pydantic model per kind)
``registry``   ``CallRegistry``: begin a turn, record its commands, finish it,
               patch state, end the call (exactly once), sweep idle calls; the
               one-hangup-per-call policy the inspector asks
``outcome``    outcome rules: tags for an ended call
=============  ==============================================================

May import: ``proxy.core``, ``proxy.errors``, ``proxy.config``, ``proxy.storage``.
Handlers never set a ``Call``'s fields: they call the registry.
"""

__all__: list[str] = []
