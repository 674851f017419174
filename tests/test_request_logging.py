"""What the API's request log line keeps of a URL and of a caller's request id."""

from __future__ import annotations

import re

import pytest

from grader.api.observability import redact_query, request_id_from


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("limit=5&offset=10", "limit=5&offset=10"),
        ("token=SECRET123", "token=[redacted]"),
        ("access_token=SECRET123&limit=5", "access_token=[redacted]&limit=5"),
        ("api_key=k&Password=p&client_secret=s", "api_key=[redacted]&Password=[redacted]&client_secret=[redacted]"),
        ("X-Amz-Signature=abc&X-Amz-Credential=def", "X-Amz-Signature=[redacted]&X-Amz-Credential=[redacted]"),
        ("%74oken=SECRET123", "token=[redacted]"),  # percent-encoded name
        ("next=gr_0123456789abcdefghijKLMNOP", "next=[redacted]"),  # an API token under any name
        ("q=Bearer+gr_0123456789abcdefghijKLMNOP", "q=[redacted]"),
        ("user=bob&status=graded", "user=bob&status=graded"),
        ("flag", "flag="),
    ],
)
def test_secret_looking_query_values_are_redacted(query: str, logged: str) -> None:
    assert redact_query(query) == logged


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"abc-123", True),
        (b"0f9c2d1e-6b7a-4c1d-9e8f-112233445566", True),
        (b"trace.id:span_1", True),
        (b"has spaces", False),
        (b"<script>", False),
        (b"x" * 65, False),
        (b"", False),
        ("caf\u00e9".encode(), False),
    ],
)
def test_a_request_id_is_kept_only_when_short_and_plain(given: bytes, kept: bool) -> None:
    request_id = request_id_from([(b"x-request-id", given)])
    if kept:
        assert request_id == given.decode()
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)


def test_a_request_without_an_id_gets_a_new_one_each_time() -> None:
    assert request_id_from([]) != request_id_from([])
