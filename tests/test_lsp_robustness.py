"""``splice lsp`` under bad input and load: a raw JSON-RPC client over the server's real stdio.

The frames are written by hand (a real LSP client library cannot send a malformed header), and
the server is the real ``python -m splice.lsp`` subprocess. Checked: every request gets a reply
(a result or a JSON-RPC error), a malformed frame is skipped and the server keeps serving up to
``exit`` with the right exit status, a burst of changes is analysed far fewer times than it has
changes, and ``shutdown`` is answered while a big analysis runs.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from splice.lsp.server import FrameReader, parse_header

SERVER = [sys.executable, "-m", "splice.lsp"]
#: How long to wait for one message (generous: the machines running tests are shared).
WAIT_S = 30.0
CONFLICT = "<<<<<<< ours\nx = 1\n||||||| base\nx = 0\n=======\nx = 2\n>>>>>>> theirs\n"
SMALL = "def f():\n    return 0\n\n" + CONFLICT + "y = 3\n"


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawClient:
    """The server as a subprocess, with the messages it sends collected by a reader thread."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.proc = subprocess.Popen(
            SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0
        init = {"capabilities": {}, "initializationOptions": options or {"resolver": "token-merge"}}
        assert "result" in self.request("initialize", init)
        self.notify("initialized", {})

    def _read(self) -> None:
        frames = FrameReader()
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            for item in frames.feed(chunk):
                assert isinstance(item, bytes), item  # the server's own frames are well formed
                self.inbox.put(json.loads(item))

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self.send(frame({"jsonrpc": "2.0", "method": method, "params": params}))

    def send_request(self, method: str, params: Any = None) -> int:
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(frame(message))
        return self.next_id

    def wait(self, match: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        """The next message for which ``match(message)`` is true (the others are kept in
        :attr:`seen`); fails after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            try:
                message = self.inbox.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no matching message within {timeout} s; got {self.seen[-5:]}")
            self.seen.append(message)
            if match(message):
                return message

    def reply(self, msg_id: Any, timeout: float = WAIT_S) -> dict[str, Any]:
        return self.wait(lambda m: "method" not in m and m.get("id") == msg_id, timeout)

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        return self.reply(self.send_request(method, params))

    def diagnostics(self, uri: str, version: int | None = None) -> dict[str, Any]:
        """The next diagnostics of ``uri`` (of ``version`` when given)."""
        return self.wait(
            lambda m: (
                m.get("method") == "textDocument/publishDiagnostics"
                and m["params"]["uri"] == uri
                and (version is None or m["params"].get("version") == version)
            )
        )["params"]

    def open(self, uri: str, text: str) -> None:
        item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": item})

    def status(self) -> dict[str, Any]:
        return self.request("workspace/executeCommand", {"command": "splice.status"})["result"]

    def shutdown_and_exit(self) -> int:
        """``shutdown`` (its reply checked), ``exit``; the exit status."""
        assert self.request("shutdown") == {"jsonrpc": "2.0", "id": self.next_id, "result": None}
        self.notify("exit", None)
        return self.proc.wait(timeout=WAIT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def raw() -> Any:
    clients: list[RawClient] = []

    def start(options: dict[str, Any] | None = None) -> RawClient:
        clients.append(RawClient(options))
        return clients[-1]

    yield start
    for client in clients:
        client.close()


def hover_params(uri: str, position: Any) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": position}


# --------------------------------------------------------------------------- every request


def test_every_request_gets_a_reply(raw: Any, tmp_path: Path) -> None:
    client = raw()
    uri = (tmp_path / "a.py").as_uri()
    client.open(uri, SMALL)
    client.diagnostics(uri)
    bad = [
        hover_params(uri, {"line": -5, "character": 0}),
        hover_params(uri, {"line": 3}),
        hover_params(uri, {"line": "three", "character": 0}),
        {"position": {"line": 0, "character": 0}},
        "not an object",
    ]
    for params in bad:
        answer = client.request("textDocument/hover", params)
        assert answer["error"]["code"] == -32602, params
        assert "textDocument/hover" in answer["error"]["message"]
    # a document the server never opened: an empty answer, not silence
    never = (tmp_path / "never.py").as_uri()
    assert client.request("textDocument/hover", hover_params(never, {"line": 0, "character": 0}))[
        "result"
    ] in (None, [])
    action = {
        "textDocument": {"uri": never},
        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
        "context": {"diagnostics": []},
    }
    assert client.request("textDocument/codeAction", action)["result"] in (None, [])
    # an unknown method still gets MethodNotFound, and the server still answers after all that
    assert client.request("splice/nothing", {})["error"]["code"] == -32601
    good = client.request("textDocument/hover", hover_params(uri, {"line": 4, "character": 0}))
    assert "Token changes against the base" in good["result"]["contents"]["value"]
    assert client.shutdown_and_exit() == 0


def test_invalid_position_names_the_problem(raw: Any, tmp_path: Path) -> None:
    client = raw()
    uri = (tmp_path / "a.py").as_uri()
    client.open(uri, SMALL)
    answer = client.request("textDocument/hover", hover_params(uri, {"line": -5, "character": 0}))
    assert "Position.line should be in range" in answer["error"]["message"]
    answer = client.request("textDocument/hover", hover_params(uri, {"line": 0}))
    assert "character" in answer["error"]["message"]


def test_requests_after_shutdown_get_an_error(raw: Any) -> None:
    client = raw()
    assert client.request("shutdown")["result"] is None
    answer = client.request("workspace/executeCommand", {"command": "splice.status"})
    assert answer["error"]["code"] == -32600
    client.notify("exit", None)
    assert client.proc.wait(timeout=WAIT_S) == 0


def test_exit_without_shutdown_exits_1(raw: Any) -> None:
    client = raw()
    client.notify("exit", None)
    assert client.proc.wait(timeout=WAIT_S) == 1


# --------------------------------------------------------------------------- malformed frames


BAD_FRAMES = {
    "length not a number": b"Content-Length: abc\r\n\r\n{}",
    "no length": b'Content-Type: application/json\r\n\r\n{"jsonrpc": "2.0", "method": "x"}',
    "negative length": b'Content-Length: -5\r\n\r\n{"jsonrpc": "2.0"}',
    "garbage line": b"hello there\r\n\r\n",
    "body not JSON": b"Content-Length: 9\r\n\r\nnot json!",
    "not JSON-RPC": frame({"id": 99, "method": "textDocument/hover"}),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("bad", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
def test_a_malformed_frame_is_skipped_and_serving_goes_on(
    raw: Any, tmp_path: Path, bad: bytes
) -> None:
    client = raw()
    uri = (tmp_path / "a.py").as_uri()
    client.open(uri, SMALL)
    client.diagnostics(uri)
    client.send(bad)
    answer = client.request("textDocument/hover", hover_params(uri, {"line": 4, "character": 0}))
    assert "Token changes against the base" in answer["result"]["contents"]["value"]
    assert client.shutdown_and_exit() == 0
    errors = [m for m in client.seen if "error" in m]
    if bad.endswith(b"not json!"):
        assert [e["error"]["code"] for e in errors] == [-32700] and errors[0]["id"] is None
    elif b'"id": 99' in bad:
        assert [(e["id"], e["error"]["code"]) for e in errors] == [(99, -32600)]
    else:
        logged = [
            m["params"]["message"] for m in client.seen if m.get("method") == "window/logMessage"
        ]
        assert any("malformed message skipped" in m for m in logged)


def test_frames_split_anywhere_and_bad_ones_between_good_ones() -> None:
    good = [frame({"jsonrpc": "2.0", "id": i, "method": "m"}) for i in range(3)]
    stream = good[0] + BAD_FRAMES["length not a number"] + good[1] + b"\r\n" + good[2]
    for size in (1, 7, len(stream)):
        reader = FrameReader()
        out: list[bytes | str] = []
        for start in range(0, len(stream), size):
            out += reader.feed(stream[start : start + size])
        bodies = [json.loads(x)["id"] for x in out if isinstance(x, bytes)]
        assert bodies == [0, 1, 2], size
        assert sum(isinstance(x, str) for x in out) == 2  # the bad length; the stray blank line


def test_header_rules() -> None:
    assert parse_header(b"Content-Length: 12") == (12, None)
    assert parse_header(b"content-length:12\r\nContent-Type: x; charset=utf-8") == (12, None)
    for block in (b"Content-Length: abc", b"Content-Length: -1", b"Content-Type: x", b"junk"):
        assert parse_header(block)[1] is not None, block
    assert parse_header(b"Content-Length: %d" % (1 << 40))[1] is not None


# --------------------------------------------------------------------------- bounded time


def numbered(lines: int, conflicts: int) -> str:
    """A Python file of about ``lines`` lines with ``conflicts`` diff3 conflicts spread over it."""
    body = [f"value_{i} = compute({i})\n" for i in range(lines - 7 * conflicts)]
    step = max(1, len(body) // conflicts)
    out: list[str] = []
    for i, line in enumerate(body):
        if i % step == step // 2 and i // step < conflicts:
            out.append(CONFLICT.replace("x = ", f"x_{i} = "))
        out.append(line)
    return "".join(out)


def test_a_burst_of_changes_is_analysed_far_fewer_times(raw: Any, tmp_path: Path) -> None:
    client = raw()
    uri = (tmp_path / "burst.py").as_uri()
    client.open(uri, numbered(3000, 5))
    assert len(client.diagnostics(uri)["diagnostics"]) == 5
    before = client.status().get("analysed", {}).get(uri, 0)
    for version in range(2, 22):  # 20 keystrokes, typed faster than the debounce
        change = {
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}
        }
        change["text"] = "#"
        params = {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]}
        client.notify("textDocument/didChange", params)
    final = client.diagnostics(uri, version=21)
    assert len(final["diagnostics"]) == 5
    published = [
        m
        for m in client.seen
        if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri
    ]
    after_burst = published[1:]  # the first one answered didOpen
    assert 1 <= len(after_burst) <= 3, [m["params"]["version"] for m in after_burst]
    assert client.status()["analysed"][uri] - before <= 3
    assert client.shutdown_and_exit() == 0


def test_shutdown_is_answered_while_a_big_analysis_runs(raw: Any, tmp_path: Path) -> None:
    client = raw()
    uri = (tmp_path / "big.py").as_uri()
    client.open(uri, numbered(99_500, 500))
    # a hover while the big analysis runs: answered (from the markers if the resolver is busy)
    hover_id = client.send_request(
        "textDocument/hover", hover_params(uri, {"line": 2, "character": 0})
    )
    shutdown_id = client.send_request("shutdown")
    client.reply(shutdown_id)
    hover = client.reply(hover_id)  # its answer, or cancelled by the shutdown
    assert "result" in hover or hover["error"]["code"] == -32800
    full = [
        m
        for m in client.seen
        if m.get("method") == "textDocument/publishDiagnostics"
        and not any("still computing" in d["message"] for d in m["params"]["diagnostics"])
    ]
    assert full == []  # shutdown was answered before the analysis could finish
    client.notify("exit", None)
    assert client.proc.wait(timeout=WAIT_S) == 0


def test_a_big_file_shows_its_conflicts_before_its_suggestions(raw: Any, tmp_path: Path) -> None:
    client = raw()
    uri = (tmp_path / "big.py").as_uri()
    client.open(uri, numbered(20_000, 100))
    first = client.diagnostics(uri)["diagnostics"]
    assert len(first) == 100 and all("still computing" in d["message"] for d in first)
    then = client.diagnostics(uri)["diagnostics"]
    assert len(then) == 100 and not any("still computing" in d["message"] for d in then)
    assert [d["range"] for d in then] == [d["range"] for d in first]
    assert client.status()["preliminary"] == 1
    assert client.shutdown_and_exit() == 0
