"""Slow and oversized clients do not starve others; a stalled body gets 408 and stores nothing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.collector.test_bad_input import rows
from tests.integration.collector.test_ingest import make_report, post
from tests.support.collector import RunningCollector, run_collector

ROOMY = {"rate_limit_rps": 10_000.0, "rate_limit_burst": 10_000}


@pytest.fixture
def impatient(database_url: str) -> Iterator[RunningCollector]:
    with run_collector(database_url, body_read_timeout=2.0, **ROOMY) as running:
        yield running


def open_trickle(collector: RunningCollector, length: int) -> socket.socket:
    parts = urlsplit(collector.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    token = collector.ingest_headers("cust_1")["authorization"]
    sock.sendall(
        (
            "POST /api/usage/report HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"authorization: {token}\r\ncontent-length: {length}\r\n\r\n"
        ).encode()
    )
    return sock


def trickle(sock: socket.socket, body: bytes, stop: threading.Event, pause: float) -> bytes:
    """Send one byte at a time until stopped or refused; return what the server answered."""
    for index in range(len(body)):
        if stop.wait(pause):
            break
        try:
            sock.sendall(body[index : index + 1])
        except OSError:
            break
    sock.settimeout(30)
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def test_trickling_clients_do_not_block_others_and_time_out(
    impatient: RunningCollector,
) -> None:
    body = make_report(hours_ago=9).to_json().encode()
    stop = threading.Event()
    answers: list[bytes] = []
    sockets = [open_trickle(impatient, len(body)) for _ in range(8)]
    threads = [
        threading.Thread(target=lambda s=s: answers.append(trickle(s, body, stop, 0.05)))
        for s in sockets
    ]
    for thread in threads:
        thread.start()
    try:
        for hours_ago in range(1, 21):
            response = post(impatient, make_report(hours_ago).to_json())
            assert response.status_code == 201
            assert httpx.get(f"{impatient.url}/health/live", timeout=5).status_code == 200
    finally:
        for thread in threads:
            thread.join()
        stop.set()
        for sock in sockets:
            sock.close()
    assert len(answers) == 8
    assert all(b" 408 " in answer.split(b"\r\n", 1)[0] for answer in answers), answers
    assert b"request_timeout" in answers[0]
    assert rows(impatient)[0] == 20


def test_oversized_bodies_are_refused_while_others_are_served(database_url: str) -> None:
    with run_collector(database_url, **ROOMY) as collector:
        stop = threading.Event()
        refused: list[int] = []
        huge = b"{" + b" " * (4 * 1024 * 1024) + b"}"
        auth = {"content-type": "application/json", **collector.ingest_headers("cust_1")}

        def flood(chunked: bool) -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    content = iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)])
                    try:
                        response = client.post(
                            f"{collector.url}/api/usage/report",
                            content=content if chunked else huge,
                            headers=auth,
                        )
                        refused.append(response.status_code)
                    except httpx.HTTPError:
                        refused.append(0)

        flooders = [threading.Thread(target=flood, args=(i % 2 == 0,)) for i in range(4)]
        for thread in flooders:
            thread.start()
        try:
            for hours_ago in range(1, 21):
                assert post(collector, make_report(hours_ago).to_json()).status_code == 201
        finally:
            stop.set()
            for thread in flooders:
                thread.join()
        answered = [code for code in refused if code]
        assert answered
        assert set(answered) == {413}
        assert rows(collector)[0] == 20


def test_a_client_trickling_its_headers_is_cut_off_while_others_are_served(
    database_url: str,
) -> None:
    """Issue 10, item 9: the body deadline never covered headers, so they could trickle forever."""
    with run_collector(database_url, header_read_timeout=1.0, **ROOMY) as collector:
        parts = urlsplit(collector.url)
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        stop = threading.Event()
        head = b"POST /api/usage/report HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 200
        answered: list[bytes] = []
        sender = threading.Thread(
            target=lambda: answered.append(trickle(sock, head, stop, 0.1)), daemon=True
        )
        sender.start()
        assert post(collector, make_report().to_json()).status_code == 201
        sender.join(timeout=15)
        stop.set()
        sock.close()
        assert not sender.is_alive(), "the server kept waiting for the headers"
        assert answered == [b""]
        assert rows(collector) == (1, 3)
