"""Tool calls written as text (sans-IO): the forms vLLM's tool parsers read, found in
a stream of speech however it is split (reference: vLLM's
``vllm/entrypoints/openai/tool_parsers/*.py`` and ``tests/tool_parsers/``; read, not
copied).

Models served without a tool parser (vLLM without ``--enable-auto-tool-choice``,
llama.cpp without ``--jinja``, Ollama with a raw template) write their tool calls
into ``content`` in their own syntax; :class:`TextToolScanner` takes them out of the
speech as :class:`TextCall` objects. One module per form:

====================  ==========================================================
``scanner``           the incremental scanner: holding, candidates, markers
``reading``           :class:`TextCall`, the reader protocol, JSON calls read
``balance``           where a bracketed value ends, found in pieces
``tags``              marker forms (start … end marker) and markers alone
``hermes``            ``<tool_call>{"name": …, "arguments": …}</tool_call>``
``glm45``             ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``
``qwen3_coder``       ``<tool_call><function=name><parameter=k>v</parameter></function></tool_call>``
``deepseek_v3``       ``<｜tool▁calls▁begin｜>…`` (V3 and V3.1)
``kimi_k2``           ``<|tool_calls_section_begin|>…``
``mistral``           ``[TOOL_CALLS][{…}]`` and ``[TOOL_CALLS]name[ARGS]{…}``
``llama3_json``       ``{"name": …, "parameters": {…}}`` (after ``<|python_tag|>`` too)
``pythonic``          ``[fn(a=1), g()]`` (``pythonic``, ``llama4_pythonic``)
``functions``         ``functions.NAME({…})``, ``functions.NAME:{…}``, a known tool's ``NAME(…)``
====================  ==========================================================
"""

from __future__ import annotations

from .reading import TextCall
from .scanner import FORMS, MAX_FORM_CHARS, FormName, TextToolScanner

__all__ = ["FORMS", "MAX_FORM_CHARS", "FormName", "TextCall", "TextToolScanner"]
