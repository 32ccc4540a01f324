"""OpenAI's speech-to-speech calls over SIP (GPT-Live and the Realtime API), sans-IO:
the third front door's protocol, decided here and carried out by
:mod:`proxy.server.doors.openai_sip`.

Source: ``shared/reference/realtime-sip.md`` (OpenAI's voice-sip, realtime-sip and
server-controls guides, the live/realtime API reference, openai-python's types), cited
per module.

==============  ===================================================================
``api``         which API (``live`` or ``realtime``), its REST and sideband URLs,
                a transfer target as a ``tel:``/``sip:`` URI
``webhook``     the incoming-call webhook read into a frozen record; SIP ``From`` /
                ``To`` headers into caller and callee numbers
``accept``      the accept body: the configured session, the FunctionMap's tools,
                input transcription
``events``      sideband server events of both APIs read into frozen messages
``client``      client events callgate sends on the sideband
``usage``       tokens and seconds, and what they cost at the configured prices
``table``       the call's control as a state machine: phases, triggers, one table
``turns``       what was said and done, cut into turns for the call record
``actions``     what the controller asks the server to do and is told back; its settings
``controller``  one call's controller: events in, actions out
==============  ===================================================================
"""

__all__: list[str] = []
