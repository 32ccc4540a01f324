"""The hot-path JSON codec gives the same answers with orjson and with the standard library."""

from __future__ import annotations

import pytest

from proxy.core import json_codec

SAMPLES = [
    {"id": "c", "choices": [{"index": 0, "delta": {"content": "你好 <b> \"q\" \\ \n"}, "finish_reason": None}]},
    {"choices": [], "usage": {"total_tokens": 3}, "x": [1.5, True, None, 2**70]},
]


@pytest.mark.parametrize("obj", SAMPLES)
def test_dumps_same_bytes_either_way(obj: dict) -> None:
    assert json_codec.dumps(obj) == json_codec.std_dumps(obj)
    assert json_codec.loads(json_codec.dumps(obj)) == obj


def test_loads_accepts_what_the_standard_library_accepts() -> None:
    assert json_codec.loads('{"a": NaN}')["a"] != json_codec.loads('{"a": NaN}')["a"]
    with pytest.raises(ValueError):
        json_codec.loads("{nope")
