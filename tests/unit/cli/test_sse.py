"""Reading the API's Server-Sent Events body."""

from __future__ import annotations

from service.cli.sse import Message, messages


def test_messages_ids_and_heartbeats() -> None:
    body = [
        b": stream open\n",
        b"\n",
        b"id: 1-0\n",
        b"event: ScheduleCreated\n",
        b'data: {"a": 1}\n',
        b"\n",
        b": heartbeat\n",
        b"\n",
        b"id: 1-3\r\n",
        b"\r\n",
        b"id: 2-0\n",
        b"event: Multi\n",
        b"data: one\n",
        b"data: two\n",
        b"\n",
        b"data: no id\n",
    ]  # the last message is cut off: never dispatched
    assert list(messages(body)) == [
        Message("1-0", "ScheduleCreated", '{"a": 1}'),
        Message("1-3", None, None),  # moves the cursor past filtered-out events
        Message("2-0", "Multi", "one\ntwo"),
    ]


def test_a_message_without_an_id_keeps_the_last_one() -> None:
    body = [b"id: 5-0\n", b"data: x\n", b"\n", b"data: y\n", b"\n"]
    assert [m.id for m in messages(body)] == ["5-0", "5-0"]
