"""The one reply every sandboxed program sends, read without trusting it."""

from __future__ import annotations

import pytest

from grader.sandbox import protocol
from grader.sandbox.protocol import Reply


@pytest.mark.parametrize("payload", [None, [], "predicted", 7, {"status": 3}, {"no": "status"}])
def test_anything_but_an_object_with_a_status_reads_as_no_reply(payload: object) -> None:
    reply = Reply.read(payload)
    assert reply.status == "" and not reply.failed and reply.get("predictions") is None


def test_an_error_reply_says_why_and_where_within_bounds() -> None:
    reply = Reply.read(protocol.error("memory", "x" * 10_000, "building the network"))
    assert reply.failed and reply.kind == "memory" and reply.stage == "building the network"
    assert len(reply.message) == protocol.MAX_MESSAGE


def test_fields_of_the_wrong_type_are_dropped_not_trusted() -> None:
    reply = Reply.read({"status": "predicted", "kind": ["memory"], "message": {"a": 1}, "trace": [1], "checkpoint": {}})
    assert reply.status == "predicted" and reply.kind == "" and reply.message == ""
    assert reply.mapping("trace") is None and reply.mapping("checkpoint") == {}


def test_a_rejected_reply_keeps_its_fields_under_the_protocols_status() -> None:
    reply = Reply.read(protocol.rejected("not a checkpoint", cause="checkpoint", status="predicted"))
    assert reply.status == protocol.REJECTED and reply.get("cause") == "checkpoint"


def test_the_harnesses_reply_through_the_same_protocol() -> None:
    """The student harness is standalone (copied into the sandbox), yet its errors are the protocol's."""
    from grader.evaluation.student import harness

    error = harness.HarnessError("interface", "finding ResNet", "NetWork.py has no function or class ResNet")
    assert error.to_json() == protocol.error(
        "interface", "NetWork.py has no function or class ResNet", "finding ResNet"
    )
    assert harness.protocol is protocol
