"""The frame reader on its own: resynchronising after bad frames, whatever their size."""

from __future__ import annotations

import io

import pytest

from podlink.server.framing import MAX_HEADER_LINE, FrameError, FrameReader


def framed(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def frames(data: bytes, limit: int = 1000) -> list[bytes | int]:
    """What the reader makes of ``data``: bodies, and error codes where it refused."""
    reader = FrameReader(io.BytesIO(data), limit=limit)
    found: list[bytes | int] = []
    while (frame := reader.next_frame()) is not None:
        found.append(frame.code if isinstance(frame, FrameError) else frame)
    return found


@pytest.mark.parametrize("cut", [0, 1, 7, 14, 15])
def test_a_header_cut_across_reads_is_still_found(cut: int) -> None:
    # A bad message whose body is one line longer than a read, with the next header placed so
    # that the read boundary falls inside "Content-Length:".
    padding = b"x" * (2 * MAX_HEADER_LINE - cut)
    data = b"Content-Length: nope\r\n\r\n" + padding + framed(b'{"a": 1}')
    assert frames(data) == [-32700, b'{"a": 1}']


def test_an_oversized_message_is_skipped_and_the_next_read() -> None:
    assert frames(framed(b"y" * 5000) + framed(b"{}"), limit=1000) == [-32600, b"{}"]


def test_blank_lines_between_messages_and_other_headers_are_fine() -> None:
    data = b"\r\n" + framed(b"[1]") + b"Content-Type: application/json\r\n" + framed(b"{}")
    assert frames(data) == [b"[1]", b"{}"]


def test_a_cut_off_body_ends_the_stream_quietly() -> None:
    assert frames(b"Content-Length: 10\r\n\r\n{}") == []
