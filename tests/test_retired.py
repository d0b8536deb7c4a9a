"""Clients a reload replaced, closed between rounds."""

from __future__ import annotations

import logging

import pytest

from receiver.retired import Retired

pytestmark = pytest.mark.anyio


class Client:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        if self.fails:
            raise OSError("connection reset while closing")


async def test_a_client_that_fails_to_close_leaves_the_others_closed_and_the_round_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    retired = Retired()
    clients = [Client(), Client(fails=True), Client()]
    for client in clients:
        retired.add(client)

    await retired.close()  # the round that called it goes on

    assert [c.closed for c in clients] == [True, True, True]
    assert not retired
    said = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in said] == ["closing a client a reload replaced failed"]
