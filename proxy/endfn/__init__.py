"""The end function: what runs after a call ends, durably.

================  ===========================================================
``conversation``  ``Conversation``, the frozen view of a call a step receives
``pipeline``      the durable runner: the step graph, retries, dead letters
``effects``       every side effect of a step, and the sandbox's recorder
``conditions``    ``when:`` conditions (declarative, no code evaluated)
``sandbox``       ``callgate end-function test``
``steps/``        the built-in steps, one module each
================  ===========================================================

What it may import: the import rule in :mod:`proxy`.
"""

from .conversation import Conversation
from .steps.result import StepResult

__all__ = ["Conversation", "StepResult"]
