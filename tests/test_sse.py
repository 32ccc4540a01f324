"""SSE decoding: whole, byte by byte, at random splits; recorded streams and edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.sse import (
    SSEDecodeError,
    SSEDecoder,
    SSEEvent,
    encode_data,
    encode_event,
)

from .conftest import fixture_names, fixture_stream


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    dec = SSEDecoder()
    events: list[SSEEvent] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        events += dec.feed(data[start:cut])
        start = cut
    return events + dec.close()


def decode_whole(data: bytes) -> list[SSEEvent]:
    dec = SSEDecoder()
    return dec.feed(data) + dec.close()


@pytest.mark.parametrize("name", fixture_names() or ["content-plain.sse"])
def test_recorded_streams_whole_and_byte_by_byte(name: str) -> None:
    data = fixture_stream(name)
    whole = decode_whole(data)
    by_byte = decode_in_pieces(data, list(range(len(data))))
    assert whole == by_byte
    assert b"".join(e.raw for e in whole) == data  # raw bytes add up to the stream
    assert whole[-1].data == "[DONE]"
    assert all(e.data.startswith("{") for e in whole[:-1])


def test_event_count_of_a_recorded_stream() -> None:
    data = fixture_stream("content-plain.sse")
    events = decode_whole(data)
    assert len(events) == data.count(b"\n\n")


@given(st.lists(st.integers(min_value=0, max_value=6000), max_size=40))
@settings(max_examples=150, deadline=None)
def test_recorded_stream_random_splits(cuts: list[int]) -> None:
    data = fixture_stream("content-long-json.sse")[:6000]
    assert decode_in_pieces(data, [c for c in cuts if c <= len(data)]) == decode_whole(data)


SAMPLE = (
    b": comment to ignore\r\n"
    b"data: first\r\n"
    b"data: second\r\n\r\n"
    b"event: ping\rdata: x\r\r"
    b"id: 7\nretry: 1500\ndata:no-space\n\n"
    + "data: 你好，世界\n\n".encode()
    + b"data: [DONE]\n\n"
)


def test_line_endings_comments_multiline_fields() -> None:
    events = decode_whole(SAMPLE)
    assert [e.data for e in events] == ["first\nsecond", "x", "no-space", "你好，世界", "[DONE]"]
    assert events[1].event == "ping"
    assert events[2].id == "7" and events[2].retry == 1500
    assert events[3].id == "7"  # the last event id persists
    assert b"".join(e.raw for e in events) == SAMPLE


@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=30))
@settings(max_examples=300, deadline=None)
def test_sample_random_splits_including_inside_crlf_and_utf8(cuts: list[int]) -> None:
    assert decode_in_pieces(SAMPLE, cuts) == decode_whole(SAMPLE)


def test_every_single_split_point() -> None:
    whole = decode_whole(SAMPLE)
    for i in range(len(SAMPLE) + 1):
        assert decode_in_pieces(SAMPLE, [i]) == whole, i


def test_trailing_input_without_blank_line_is_flushed() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"data: {\"a\":1}\n\ndata: [DONE]") == [SSEEvent(b'data: {"a":1}\n\n', '{"a":1}')]
    assert dec.close() == [SSEEvent(b"data: [DONE]", "[DONE]")]
    assert dec.close() == []


def test_bom_and_keepalive_only_block() -> None:
    events = decode_whole(b"\xef\xbb\xbf: keep-alive\n\ndata: 1\n\n")
    assert events == [SSEEvent(b": keep-alive\n\n", None), SSEEvent(b"data: 1\n\n", "1")]


def test_event_too_large() -> None:
    dec = SSEDecoder(max_event_bytes=64)
    with pytest.raises(SSEDecodeError):
        dec.feed(b"data: " + b"x" * 100)


def test_encoding() -> None:
    assert encode_data("a") == b"data: a\n\n"
    assert encode_data("a\nb") == b"data: a\ndata: b\n\n"
    assert encode_event("{}", event="hangup", id="3") == b"id: 3\nevent: hangup\ndata: {}\n\n"
    assert decode_whole(encode_data("x\ny"))[0].data == "x\ny"
