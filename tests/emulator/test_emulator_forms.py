"""Unit tests of the body helpers where HTTP clients cannot easily produce the edge cases."""

from __future__ import annotations

import io

import pytest

from airflow_qikberry.emulator.forms import BodyError, BodyReader, nest, parse_multipart


def test_nest_php_style_keys() -> None:
    pairs = [
        ("tags[]", "a"),
        ("tags[]", "b"),
        ("meta[tags][]", "x"),
        ("filter[name]", "n"),
        ("plain", "p"),
        ("odd[][x]", "kept"),
    ]
    assert nest(pairs) == {
        "tags": ["a", "b"],
        "meta": {"tags": ["x"]},
        "filter": {"name": "n"},
        "plain": "p",
        "odd[][x]": "kept",
    }


def test_chunked_reader_stops_at_the_end_of_the_body() -> None:
    raw = io.BytesIO(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT REQUEST")
    reader = BodyReader(raw, None, True, limit=1000)
    assert reader.read_all() == b"hello world"
    assert raw.read() == b"NEXT REQUEST"


def test_plain_reader_never_reads_past_content_length() -> None:
    raw = io.BytesIO(b"abcdefNEXT")
    assert BodyReader(raw, 6, False, limit=100).read_all() == b"abcdef"
    assert raw.read() == b"NEXT"


def test_body_limit() -> None:
    with pytest.raises(BodyError) as info:
        BodyReader(io.BytesIO(b"x" * 50), 50, False, limit=10).read_all()
    assert info.value.status == 413


def test_truncated_body() -> None:
    with pytest.raises(BodyError):
        BodyReader(io.BytesIO(b"abc"), 10, False, limit=100).read_all()


def test_multipart_with_boundary_like_content_and_epilogue() -> None:
    boundary = "BOUND"
    # File content contains "--BOUND" without a preceding CRLF: must not end the part.
    body = (
        b'preamble\r\n--BOUND\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi there\r\n'
        b'--BOUND\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n919876543210\n--BOUNDARY-ish\n"
        + b"9" * 200_000
        + b"\r\n--BOUND--\r\nepilogue"
    )
    raw = io.BytesIO(body + b"NEXT")
    reader = BodyReader(raw, len(body), False, limit=10_000_000)
    result = parse_multipart(reader, boundary)
    try:
        assert result.fields == [("message", "hi there")]
        upload = result.files["file"]
        assert (upload.filename, upload.content_type, upload.size) == (
            "a.txt",
            "text/plain",
            13 + 15 + 200_000,
        )
        assert upload.file.read(12) == b"919876543210"
        assert raw.read() == b"NEXT"  # the epilogue is consumed, the next request is untouched
    finally:
        result.close()


def test_multipart_without_closing_boundary() -> None:
    body = b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nvalue-without-end'
    with pytest.raises(BodyError):
        parse_multipart(BodyReader(io.BytesIO(body), len(body), False, limit=1000), "B")
