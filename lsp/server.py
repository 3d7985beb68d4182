"""The pygls server: transport, scheduling, configuration, and one small handler per LSP feature.

Three promises, whatever the client sends:

- **Every request gets a reply.** Messages are read by :func:`serve` instead of pygls' loop:
  a request whose params do not fit the LSP types (a position at line -5, one without
  ``character``) gets ``InvalidParams`` (-32602), a body that is not JSON ``ParseError``
  (-32700, id null), a request after ``shutdown`` ``InvalidRequest``. A request about a document
  that was never opened gets an empty result.
- **A bad frame costs only itself.** :class:`FrameReader` splits the byte stream; a header block
  it cannot use (``Content-Length: abc``, a negative or missing length, a line that is no header)
  is logged and skipped up to the next ``Content-Length:`` header, and serving goes on.
- **Answers come in bounded time.** Documents are analysed on one worker thread, off the event
  loop, so ``shutdown``, hovers and every other message are read while an analysis runs. Changes
  are debounced (``debounceMs``): a burst of keystrokes is analysed once, at its last version. A
  newer version, a close or a shutdown makes the running analysis stale; it stops between the
  resolver's batches (:class:`~splice.lsp.engine.Cancelled`) and its result is dropped. A big
  document (more conflicts than one batch) gets its diagnostics from the markers first, marked
  as pending, and its suggestions are asked nearest the last edit first. A request waits at most
  :data:`REQUEST_WAIT_S` for the analysis of the current version (:data:`PENDING_WAIT_S` when its
  markers are known already), then answers from the markers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from splice.lsp import actions, diagnostics, hover, lens
from splice.lsp.analysis import Analysis, analyze
from splice.lsp.edits import text_edit, workspace_edit
from splice.lsp.engine import BATCH, Cancelled, Engine
from splice.lsp.settings import SECTION, Settings

from splice import __version__

#: The command that reports the server's state (resolver, threshold, whether torch is loaded).
STATUS = "splice.status"
#: How long a request waits for the current version's analysis before answering from the markers.
REQUEST_WAIT_S = 2.0
#: The same when the markers-only analysis of the current version is there already (a big file).
PENDING_WAIT_S = 0.5
#: JSON-RPC error codes.
PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS = -32700, -32600, -32602
#: Header bytes read without finding the end of the header block before it counts as garbage.
MAX_HEADER = 8192
#: The largest body accepted (a bigger Content-Length is treated as a malformed header).
MAX_BODY = 1 << 30
_LENGTH = b"content-length:"
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*:[ \t]*(.*?)[ \t]*")


# --------------------------------------------------------------------------- transport


class FrameReader:
    """Splits a byte stream into message bodies (``Content-Length`` framing).

    :meth:`feed` returns the complete bodies (bytes) and, in stream order, one message (str) per
    header block it could not use; after such a block it skips to the next ``Content-Length:``.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.body_length: int | None = None
        self.skipping = False

    def feed(self, data: bytes) -> list[bytes | str]:
        """Add ``data``; the bodies and problems it completes."""
        self.buffer += data
        out: list[bytes | str] = []
        while True:
            if self.body_length is not None:
                if len(self.buffer) < self.body_length:
                    return out
                out.append(bytes(self.buffer[: self.body_length]))
                del self.buffer[: self.body_length]
                self.body_length = None
                continue
            if self.skipping and not self._resync(0):
                return out
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    out.append(f"no end of header in {len(self.buffer)} bytes")
                    self._resync(1)
                return out
            length, problem = parse_header(bytes(self.buffer[:end]))
            if problem is not None:
                out.append(problem)
                self._resync(1)
                continue
            del self.buffer[: end + 4]
            self.body_length = length

    def _resync(self, start: int) -> bool:
        """Drop bytes up to the next ``Content-Length:`` at or after ``start``; whether found."""
        at = self.buffer.lower().find(_LENGTH, start)
        if at < 0:
            keep = len(_LENGTH) - 1  # the start of a header that has not fully arrived
            del self.buffer[: max(0, len(self.buffer) - keep)]
            self.skipping = True
            return False
        del self.buffer[:at]
        self.skipping = False
        return True


def parse_header(block: bytes) -> tuple[int, str | None]:
    """The body length of a header block (without its blank line), or a problem."""
    length: int | None = None
    for line in block.split(b"\r\n"):
        match = _HEADER.fullmatch(line)
        if match is None:
            return 0, f"not a header line: {line[:80]!r}"
        if match.group(1).lower() == b"content-length":
            value = match.group(2)
            if not value.isdigit() or int(value) > MAX_BODY:
                return 0, f"bad Content-Length: {value[:40]!r}"
            length = int(value)
    if length is None:
        return 0, f"no Content-Length in header {block[:80]!r}"
    return length, None


def _pump(stream: BinaryIO, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue) -> None:
    """Read ``stream`` on a daemon thread (it never delays exit) and hand chunks to the loop.

    A stream with a file descriptor is read with ``os.read``: a daemon thread blocked inside a
    buffered reader would hold its lock when the interpreter finalizes it at exit."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None

    def read(n: int) -> bytes:
        return os.read(fd, n) if fd is not None else getattr(stream, "read1", stream.read)(n)

    while True:
        try:
            chunk = read(65536)
        except (OSError, ValueError):
            chunk = b""
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, chunk)
        except RuntimeError:  # the loop is closed
            return
        if not chunk:
            return


def _invalid_params(exc: BaseException, method: str) -> str:
    """One line naming what in ``method``'s params is wrong."""
    from cattrs.v import transform_error

    cause = exc.__cause__
    where = "; ".join(transform_error(cause)) if cause is not None else str(exc)
    details: list[str] = []

    def leaves(err: BaseException) -> None:
        if isinstance(err, BaseExceptionGroup):
            for sub in err.exceptions:
                leaves(sub)
        elif isinstance(err, ValueError) and str(err) not in details:
            details.append(str(err))

    if cause is not None:
        leaves(cause)
    extra = f" ({'; '.join(details)})" if details else ""
    return f"invalid params for {method}: {where}{extra}"


# --------------------------------------------------------------------------- scheduling


@dataclass
class Job:
    """One analysis to run: a snapshot of a document version and what to do with it."""

    uri: str
    version: int | None
    generation: int
    text: str
    path: str | None
    encoding: str
    engine: Engine
    #: The user's ``confidenceThreshold`` (None: the resolver's calibrated thresholds).
    min_confidence: float | None
    #: Answers that drop a side's edits are judged like the rest (``allowDiscard``).
    allow_discard: bool = False
    #: The line of the last edit (its conflicts are asked first in a big document).
    focus: int | None = None
    #: Set to the analysis (None when it failed or was cancelled).
    done: Future = field(default_factory=Future)


class SpliceServer(LanguageServer):
    """The language server with its settings, loaded resolver and per-document analyses."""

    def __init__(self) -> None:
        super().__init__(
            "splice", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental
        )
        self.settings = Settings()
        self._engine: Engine | None = None
        #: The full analysis of each document's latest analysed version.
        self.analyses: dict[str, Analysis] = {}
        #: A markers-only analysis (no suggestions yet) of a document's current version.
        self.preliminary: dict[str, Analysis] = {}
        #: Per document URI: the base, ours and theirs versions in git's index (None: none).
        self.stages: dict[str, tuple[str, str, str] | None] = {}
        #: Bumped by every change of a document: a job of an older generation is stale.
        self.generation: Counter[str] = Counter()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.jobs: dict[str, Job] = {}
        self.focus: dict[str, int] = {}
        #: What happened, for ``splice.status`` (tests and benchmarks read it).
        self.stats: Counter[str] = Counter()
        self.analysed: Counter[str] = Counter()
        self.exit_code = 0
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ helpers

    def log(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        """Tell the client (its log), and stderr when the client cannot be reached. Safe to call
        from the worker thread."""
        loop = self._loop
        if loop is not None and threading.current_thread() is not threading.main_thread():
            try:
                loop.call_soon_threadsafe(self._log_now, message, kind)
                return
            except RuntimeError:
                pass
        self._log_now(message, kind)

    def _log_now(self, message: str, kind: types.MessageType) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=f"splice: {message}"))
        except Exception:
            print(f"splice: {message}", file=sys.stderr, flush=True)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log unexpected errors of notifications and of the transport instead of raising."""
        detail = "".join(traceback.format_exception(error)).rstrip()
        self.log(f"internal error: {detail}", types.MessageType.Error)

    @property
    def engine(self) -> Engine:
        """The loaded resolver (rebuilt when the resolver or model path setting changes)."""
        if self._engine is None or self._engine.key != self.settings.engine_key:
            self._engine = Engine(self.settings, self.log)
            self.analyses.clear()
        return self._engine

    def configure(self, raw: Any) -> None:
        """Apply settings from the client; reports bad values, keeps the good ones."""
        self.settings, problems = self.settings.updated(raw)
        for problem in problems:
            self.log(f"setting ignored: {problem}")
        self.analyses.clear()

    @property
    def document_changes(self) -> bool:
        """Whether the client takes versioned edits (``documentChanges``)."""
        ws = self.client_capabilities.workspace
        edit = ws.workspace_edit if ws is not None else None
        return bool(edit is not None and edit.document_changes)

    def _stages(self, uri: str, path: str | None) -> tuple[str, str, str] | None:
        if uri not in self.stages:
            found = None
            if path and os.path.isfile(path):
                from splice.data.git import index_stages

                try:
                    found = index_stages(path)
                except Exception as exc:
                    self.log(f"cannot read git's index for {path}: {exc}")
            self.stages[uri] = found
        return self.stages[uri]

    # ------------------------------------------------------------------ transport

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio until ``exit`` or the end of input (see :func:`serve`)."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        try:
            asyncio.run(self.serve(stdin or sys.stdin.buffer))
        except BrokenPipeError:
            print("splice: the client went away", file=sys.stderr, flush=True)
        except SystemExit as exc:  # pygls' exit handler: 0 after shutdown, else 1
            self.exit_code = exc.code if isinstance(exc.code, int) else 1
        finally:
            self.stop_work()
            self.shutdown()

    async def serve(self, stream: BinaryIO) -> None:
        """Read frames from ``stream`` and dispatch them until the input ends."""
        self._loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        reader = threading.Thread(
            target=_pump, args=(stream, self._loop, inbox), name="splice-stdin", daemon=True
        )
        reader.start()
        frames = FrameReader()
        while self._stop_event is None or not self._stop_event.is_set():
            chunk = await inbox.get()
            if not chunk:
                self.exit_code = 0 if self.protocol._shutdown else 1
                return
            for item in frames.feed(chunk):
                if isinstance(item, str):
                    self.log(f"malformed message skipped: {item}", types.MessageType.Error)
                else:
                    self.dispatch(item)

    def dispatch(self, body: bytes) -> None:
        """Hand one message body to pygls, answering what pygls would leave unanswered."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            self.log(f"a message that is not JSON skipped: {exc}", types.MessageType.Error)
            self.reply_error(None, PARSE_ERROR, f"parse error: {exc}")
            return
        msg_id = data.get("id") if isinstance(data, dict) else None
        method = data.get("method") if isinstance(data, dict) else None
        is_request = isinstance(data, dict) and "id" in data and isinstance(method, str)
        if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
            self.reply_error(msg_id, INVALID_REQUEST, "not a JSON-RPC 2.0 message")
            return
        if is_request and self.protocol._shutdown and method != types.EXIT:
            self.reply_error(msg_id, INVALID_REQUEST, "the server is shutting down")
            return
        try:
            message = self.protocol.structure_message(data)
        except JsonRpcException as exc:
            if is_request:
                text = _invalid_params(exc, method) if isinstance(exc, JsonRpcInvalidParams) else ""
                self.reply_error(msg_id, exc.code, text or f"{exc.message} ({method})")
            else:
                self.log(f"message ignored: {_invalid_params(exc, str(method))}")
            return
        if isinstance(message, dict):  # no known shape (e.g. neither method nor result)
            self.reply_error(msg_id, INVALID_REQUEST, "not a request, notification or response")
            return
        self.protocol.handle_message(message)

    def reply_error(self, msg_id: Any, code: int, message: str) -> None:
        """Send a JSON-RPC error response (``msg_id`` None: the request could not be read)."""
        if msg_id is not None and not isinstance(msg_id, int | str):
            msg_id = None
        error = {"code": code, "message": message}
        self.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": error})

    # ------------------------------------------------------------------ scheduling

    def touch(self, uri: str) -> None:
        """The document changed (or closed): whatever runs for it is stale now."""
        self.generation[uri] += 1
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        self.preliminary.pop(uri, None)

    def schedule(self, uri: str, delay: float = 0.0) -> None:
        """Analyse the document's current version after ``delay`` seconds without a change."""
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        if delay > 0:
            self.timers[uri] = asyncio.get_running_loop().call_later(delay, self.submit, uri)
        else:
            self.submit(uri)

    def submit(self, uri: str) -> Job | None:
        """Queue an analysis of the document's current version for the worker."""
        timer = self.timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        if uri not in self.workspace.text_documents:
            return None
        doc = self.workspace.get_text_document(uri)
        engine = self.engine
        job = Job(
            uri=uri,
            version=doc.version,
            generation=self.generation[uri],
            text=doc.source,
            path=doc.path if uri.startswith("file:") else None,
            encoding=str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16),
            engine=engine,
            min_confidence=self.settings.confidence_threshold,
            allow_discard=self.settings.allow_discard,
            focus=self.focus.pop(uri, None),
        )
        old = self.jobs.get(uri)
        if old is not None and not old.done.done():
            self.stats["superseded"] += 1
        self.jobs[uri] = job
        self.stats["scheduled"] += 1
        self.run_on_worker(lambda: self.work(job))
        return job

    def run_on_worker(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the analysis thread (started on first use, a daemon)."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work_loop, name="splice-work", daemon=True)
            self._worker.start()
        self._work.put(task)

    def _work_loop(self) -> None:
        while (task := self._work.get()) is not None:
            try:
                task()
            except Exception as exc:
                self.report_server_error(exc, None)

    def stop_work(self) -> None:
        """Make every job stale and let the worker finish (it is a daemon: never waited for)."""
        for uri in list(self.generation):
            self.touch(uri)
        self._work.put(None)

    def stale(self, job: Job) -> bool:
        return self.generation[job.uri] != job.generation or self.protocol._shutdown

    def work(self, job: Job) -> None:
        """On the worker: the markers first for a big document, then the full analysis."""
        if self.stale(job):
            self.post(lambda: self.finished(job, None))
            return
        engine = job.engine
        engine.cancelled = lambda: self.stale(job)
        engine.focus = None
        try:
            if job.text.count("<<<<<<<") > BATCH:
                first = self.analyse(job, None)
                engine.focus = self._focus_index(first, job.focus)
                self.post(lambda: self.preliminary_done(job, first))
            result = self.analyse(job, engine)
        except Cancelled:
            self.post(lambda: self.finished(job, None))
            return
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc)).rstrip()
            self.log(f"cannot analyse {job.uri}: {detail}", types.MessageType.Error)
            result = None
        finally:
            engine.cancelled = lambda: False
        self.post(lambda: self.finished(job, result))

    def analyse(self, job: Job, engine: Engine | None) -> Analysis:
        return analyze(
            job.text,
            uri=job.uri,
            version=job.version,
            path=job.path,
            engine=engine,
            min_confidence=job.min_confidence,
            stages=lambda: self._stages(job.uri, job.path),
            encoding=job.encoding,
            allow_discard=job.allow_discard,
        )

    @staticmethod
    def _focus_index(found: Analysis, line: int | None) -> int | None:
        """The index, among the conflicts the resolver is asked about, nearest ``line``."""
        if line is None:
            return None
        asked = [v for v in found.conflicts if v.base is not None]
        return sum(1 for v in asked if v.last_line < line)

    def post(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop (the only thread that writes to the client)."""
        if self._loop is None:
            callback()
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is exiting
            self._loop.call_soon_threadsafe(callback)

    def preliminary_done(self, job: Job, found: Analysis) -> None:
        """On the loop: keep the markers-only analysis; show it if nothing was shown yet."""
        if self.stale(job):
            return
        self.preliminary[job.uri] = found
        self.stats["preliminary"] += 1
        if job.uri not in self.analyses:
            self.publish(job.uri, found, pending=True)

    def finished(self, job: Job, found: Analysis | None) -> None:
        """On the loop: keep and publish the analysis unless the document moved on."""
        if self.stale(job):
            self.stats["cancelled"] += 1
            job.done.set_result(None)
            return
        self.stats["analyses"] += 1
        self.analysed[job.uri] += 1
        if found is not None:
            self.analyses[job.uri] = found
        self.preliminary.pop(job.uri, None)
        self.publish(job.uri, found)
        job.done.set_result(found)

    def publish(self, uri: str, found: Analysis | None, pending: bool = False) -> None:
        """Send the document's diagnostics (none when disabled or when the markers are gone)."""
        items = (
            diagnostics.diagnostics(found, pending) if found and self.settings.diagnostics else []
        )
        version = found.version if found else None
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=items, version=version)
        )

    def current(self, uri: str) -> Analysis | None:
        """The full analysis of the document's current version, if it is done."""
        if uri not in self.workspace.text_documents:
            return None
        version = self.workspace.get_text_document(uri).version
        found = self.analyses.get(uri)
        job = self.jobs.get(uri)
        fresh = job is not None and job.generation == self.generation[uri] and job.done.done()
        if found is not None and found.version == version and fresh:
            return found
        return None

    async def analysis(self, uri: str) -> tuple[Analysis | None, bool]:
        """The analysis of the document's current version and whether it is still pending: the
        full one when it is ready within :data:`REQUEST_WAIT_S`, else the markers-only one."""
        if uri not in self.workspace.text_documents:
            self.log(f"request about a document that is not open: {uri}")
            return None, False
        loop = asyncio.get_running_loop()
        start = loop.time()
        while (found := self.current(uri)) is None:
            job = self.jobs.get(uri)
            if job is None or job.generation != self.generation[uri]:
                job = self.submit(uri)  # a request does not wait for the debounce
                if job is None:
                    return None, False
            markers = self.preliminary.get(uri)
            version = self.workspace.get_text_document(uri).version
            wait = PENDING_WAIT_S if markers and markers.version == version else REQUEST_WAIT_S
            left = start + wait - loop.time()
            if left <= 0:
                return self.markers_only(uri), True
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job.done)), left)
            except TimeoutError:
                return self.markers_only(uri), True
            if job.generation == self.generation[uri] and job.done.result() is None:
                return None, False  # the analysis failed (logged)
        return found, False

    def markers_only(self, uri: str) -> Analysis | None:
        """The document's conflicts without suggestions (computed now when not yet known)."""
        found = self.preliminary.get(uri)
        version = self.workspace.get_text_document(uri).version
        if found is None or found.version != version:
            doc = self.workspace.get_text_document(uri)
            found = analyze(
                doc.source,
                uri=uri,
                version=version,
                path=doc.path if uri.startswith("file:") else None,
                engine=None,
                min_confidence=self.settings.confidence_threshold,
                encoding=str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16),
            )
            self.preliminary[uri] = found
        return found

    def refresh(self) -> None:
        """Recompute every open document after a settings change."""
        for uri in list(self.workspace.text_documents):
            self.touch(uri)
            self.schedule(uri)
        ws = self.client_capabilities.workspace
        if ws is not None and ws.code_lens is not None and ws.code_lens.refresh_support:
            self.workspace_code_lens_refresh(None)

    def status(self) -> dict[str, Any]:
        """The resolver in use, the threshold, the settings, whether torch got imported, and
        counts of the analyses run (``analyses``, ``analysed`` per URI), ``cancelled`` and
        ``preliminary`` (markers-only) ones."""
        engine = self.engine
        return {
            "version": __version__,
            "resolver": engine.name,
            "threshold": engine.threshold(self.settings),
            "diagnostics": self.settings.diagnostics,
            "modelPath": self.settings.model_path,
            "debounceMs": self.settings.debounce_ms,
            "torchLoaded": "torch" in sys.modules,
            **{k: self.stats[k] for k in ("scheduled", "analyses", "cancelled", "preliminary")},
            "analysed": dict(self.analysed),
        }


server = SpliceServer()


@server.feature(types.INITIALIZE)
def initialize(ls: SpliceServer, params: types.InitializeParams) -> None:
    """Read initializationOptions and load the resolver now, so the first answer is fast."""
    ls.configure(params.initialization_options)
    ls.log(f"resolver {ls.engine.name}", types.MessageType.Info)


@server.feature(types.INITIALIZED)
def initialized(ls: SpliceServer, params: types.InitializedParams) -> None:
    """Run the resolver once (on the worker), so that the first document is answered at full
    speed."""
    ls.run_on_worker(ls.engine.warm)


@server.feature(types.SHUTDOWN)
def on_shutdown(ls: SpliceServer, params: None) -> None:
    """Stop every analysis: nothing will be published any more."""
    ls.stop_work()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: SpliceServer, params: types.DidOpenTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.stages.pop(uri, None)
    ls.analyses.pop(uri, None)
    ls.touch(uri)
    ls.schedule(uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: SpliceServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            ls.focus[uri] = change.range.start.line
    ls.touch(uri)
    ls.schedule(uri, ls.settings.debounce_ms / 1000)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: SpliceServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.touch(uri)
    ls.analyses.pop(uri, None)
    ls.jobs.pop(uri, None)
    ls.stages.pop(uri, None)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(
    ls: SpliceServer, params: types.DidChangeConfigurationParams
) -> None:
    """Push-style settings are applied directly; otherwise they are pulled (if the client can)."""
    raw = params.settings
    ws = ls.client_capabilities.workspace
    if not raw and ws is not None and ws.configuration:
        try:
            pulled = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
            )
            raw = pulled[0] if pulled else None
        except Exception as exc:
            ls.log(f"cannot read the configuration: {exc}")
    ls.configure(raw)
    ls.refresh()


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(
        code_action_kinds=[types.CodeActionKind.QuickFix, actions.FIX_ALL],
        resolve_provider=False,
    ),
)
async def code_action(ls: SpliceServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    found, _ = await ls.analysis(params.text_document.uri)
    return actions.code_actions(found, params, ls.document_changes) if found else []


@server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
async def code_lens(ls: SpliceServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    found, pending = await ls.analysis(params.text_document.uri)
    return lens.lenses(found, pending) if found else []


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def on_hover(ls: SpliceServer, params: types.HoverParams) -> types.Hover | None:
    found, pending = await ls.analysis(params.text_document.uri)
    return hover.hover(found, params.position.line, pending) if found else None


@server.command(lens.APPLY)
async def apply_suggestion(ls: SpliceServer, *args: Any) -> dict[str, Any]:
    """Apply the top suggestion of the conflict at ``args = [uri, line]`` (workspace/applyEdit)."""
    if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
        return {"applied": False, "reason": "expected arguments [uri, line]"}
    found, _ = await ls.analysis(args[0])
    view = found.at(args[1]) if found else None
    if found is None or view is None or view.top is None:
        ls.log(f"no conflict with a suggestion at line {args[1] + 1} of {args[0]}")
        return {"applied": False, "reason": "no conflict with a suggestion there"}
    edit = workspace_edit(found, [text_edit(view, view.top.text)], ls.document_changes)
    result = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"Splice: {view.top.name}")
    )
    return {"applied": bool(result.applied), "reason": result.failure_reason}


@server.command(STATUS)
def status(ls: SpliceServer, *args: Any) -> dict[str, Any]:
    """The server's state (:meth:`SpliceServer.status`)."""
    return ls.status()


def main() -> None:
    """Serve over stdio until the client exits; the exit status is 0 after ``shutdown``."""
    server.start_io()
    sys.exit(server.exit_code)
