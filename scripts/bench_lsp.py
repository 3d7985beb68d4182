"""Benchmark ``splice lsp``: time from didOpen to diagnostics, and codeAction, with the model warm.

A real client (pygls) starts the server over stdio, as an editor does. The file is a real record
of ../shared/data/merges (the first, shards by name, with exactly 5 conflicts in diff3 markers,
1,800-2,200 lines and a language with a grammar), rendered with diff3 markers. The server is
warmed with a few untimed rounds; then each round opens the file under a new path (so the
resolver's answer cache cannot help: every round asks the resolver about all 5 hunks) and times:

- ``didOpen -> diagnostics``: sending didOpen until publishDiagnostics arrives;
- ``codeAction (first)``: the first request of the version, at the first conflict (includes
  computing the fix-all edit with its syntax check);
- ``codeAction``: a request at each of the 5 conflicts after that;
- ``didChange -> diagnostics``: an incremental one-character edit inside a conflict.

With ``--big``, instead: a synthetic Python file of 99,500 lines with 500 diff3 conflicts (one
every ~200 lines), opened once, timing

- ``didOpen -> first diagnostics``: the conflicts from the markers (marked pending);
- ``request while analysing``: ``splice.status`` and a hover sent right after didOpen;
- ``didOpen -> suggestions``: the diagnostics with the resolver's answers;
- ``burst of 20 changes -> diagnostics``: 20 one-character edits sent back to back inside one
  conflict, until the diagnostics of the last version, with how many analyses ran for them.

Usage: ``python scripts/bench_lsp.py [--rounds 40] [--resolver auto] [--model-path DIR] [--big]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import lzma
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from splice.resolver.chunks import split_lines
from splice.resolver.linemerge import merge_lines
from splice.resolver.markers import parse, render

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "merges"
GRAMMARS = ("python", "java", "javascript", "typescript", "go", "csharp")


def pick_record() -> tuple[dict[str, Any], str]:
    """The benchmark's record and its text with diff3 markers."""
    for shard in sorted(DATA.glob("*.jsonl.xz")):
        with lzma.open(shard, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if rec["lang"] not in GRAMMARS or rec["n_conflicts"] != 5:
                    continue
                base = split_lines(rec["base"])
                chunks = merge_lines(base, split_lines(rec["ours"]), split_lines(rec["theirs"]))
                if sum(1 for c in chunks if not hasattr(c, "units")) != 5:
                    continue
                chunks = merge_lines(
                    base, split_lines(rec["ours"]), split_lines(rec["theirs"]), "diff3"
                )
                text = render(chunks, "diff3", base_lines=base)
                if 1800 <= text.count("\n") <= 2200 and len(parse(text).conflicts) == 5:
                    return rec, text
    raise SystemExit(f"no suitable record under {DATA}")


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


class Bench:
    """A pygls client that records when each document's diagnostics arrive."""

    def __init__(self) -> None:
        self.client = LanguageClient("splice-bench", "1")
        self.waiting: dict[str, asyncio.Future[list[types.Diagnostic]]] = {}
        #: Every publication per URI, in order (the big-file case reads them).
        self.received: dict[str, list[types.PublishDiagnosticsParams]] = {}

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.received.setdefault(params.uri, []).append(params)
            future = self.waiting.pop(params.uri, None)
            if future is not None and not future.done():
                future.set_result(list(params.diagnostics))

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def log(params: types.LogMessageParams) -> None:
            if params.type <= types.MessageType.Warning:
                print(params.message, file=sys.stderr)

    def expect(self, uri: str) -> asyncio.Future[list[types.Diagnostic]]:
        future: asyncio.Future[list[types.Diagnostic]] = asyncio.get_running_loop().create_future()
        self.waiting[uri] = future
        return future

    async def open(self, uri: str, text: str) -> tuple[float, list[types.Diagnostic]]:
        future = self.expect(uri)
        start = time.perf_counter()
        item = types.TextDocumentItem(uri, "python", 1, text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        diags = await future
        return time.perf_counter() - start, diags

    async def change(self, uri: str, version: int, at: types.Position) -> float:
        future = self.expect(uri)
        start = time.perf_counter()
        change = types.TextDocumentContentChangePartial(range=types.Range(at, at), text="x")
        ident = types.VersionedTextDocumentIdentifier(uri=uri, version=version)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(ident, [change]))
        await future
        return time.perf_counter() - start

    async def action(self, uri: str, line: int) -> float:
        pos = types.Position(line, 0)
        params = types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri),
            range=types.Range(pos, pos),
            context=types.CodeActionContext(diagnostics=[]),
        )
        start = time.perf_counter()
        found = await self.client.text_document_code_action_async(params)
        elapsed = time.perf_counter() - start
        assert found, "no code actions"
        return elapsed

    async def published(self, uri: str, check: Any) -> types.PublishDiagnosticsParams:
        """The first publication for ``uri`` (received so far or later) that ``check`` accepts."""
        while True:
            for params in self.received.get(uri, []):
                if check(params):
                    return params
            await asyncio.sleep(0.005)

    async def timed(self, awaitable: Any) -> tuple[float, Any]:
        start = time.perf_counter()
        result = await awaitable
        return time.perf_counter() - start, result

    def close(self, uri: str) -> None:
        ident = types.TextDocumentIdentifier(uri)
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(ident))


CONFLICT = "<<<<<<< ours\nx = 1\n||||||| base\nx = 0\n=======\nx = 2\n>>>>>>> theirs\n"


def big_file(lines: int = 99_500, conflicts: int = 500) -> str:
    """``lines`` lines of Python with ``conflicts`` diff3 conflicts spread evenly."""
    body = [f"value_{i} = compute({i})\n" for i in range(lines - 7 * conflicts)]
    step = len(body) // conflicts
    out: list[str] = []
    for i, line in enumerate(body):
        if i % step == step // 2 and i // step < conflicts:
            out.append(CONFLICT.replace("x = ", f"x_{i} = "))
        out.append(line)
    return "".join(out)


async def run_big(bench: Bench) -> None:
    """The big-file case (module doc)."""
    text = big_file()
    uri = Path("/tmp/splice-bench/big/file.py").as_uri()
    print(f"file: synthetic, {text.count(chr(10))} lines, {text.count('<<<<<<<')} conflicts")
    client = bench.client
    start = time.perf_counter()
    first = bench.expect(uri)
    item = types.TextDocumentItem(uri, "python", 1, text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(item))
    took, _ = await bench.timed(
        client.workspace_execute_command_async(types.ExecuteCommandParams("splice.status"))
    )
    print(f"splice.status while analysing   {took * 1000:8.1f} ms")
    diags = await first
    print(f"didOpen -> first diagnostics     {(time.perf_counter() - start) * 1000:8.1f} ms")
    line = diags[0].range.start.line + 1
    hover = types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(line, 0))
    took, _ = await bench.timed(client.text_document_hover_async(hover))
    print(f"hover while analysing            {took * 1000:8.1f} ms")
    await bench.published(
        uri, lambda p: not any("still computing" in d.message for d in p.diagnostics)
    )
    print(f"didOpen -> suggestions           {(time.perf_counter() - start) * 1000:8.1f} ms")
    before = await client.workspace_execute_command_async(
        types.ExecuteCommandParams("splice.status")
    )
    start = time.perf_counter()
    version = 1
    at = types.Position(line, 5)
    for _ in range(20):
        version += 1
        change = types.TextDocumentContentChangePartial(range=types.Range(at, at), text="1")
        ident = types.VersionedTextDocumentIdentifier(uri=uri, version=version)
        client.text_document_did_change(types.DidChangeTextDocumentParams(ident, [change]))
    await bench.published(uri, lambda p: p.version == version)
    took = (time.perf_counter() - start) * 1000
    after = await client.workspace_execute_command_async(
        types.ExecuteCommandParams("splice.status")
    )
    ran = after["analysed"][uri] - before["analysed"][uri]
    print(f"burst of 20 changes -> diagnostics {took:6.1f} ms ({ran} analysis, 20 changes)")


async def run(args: argparse.Namespace) -> None:
    if args.big:
        bench = Bench()
        await bench.client.start_io(sys.executable, "-m", "splice.lsp")
        options: dict[str, Any] = {"resolver": args.resolver}
        if args.model_path:
            options["modelPath"] = args.model_path
        await bench.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), initialization_options=options
            )
        )
        bench.client.initialized(types.InitializedParams())
        await run_big(bench)
        await bench.client.shutdown_async(None)
        bench.client.exit(None)
        await bench.client.stop()
        return
    rec, text = pick_record()
    suffix = Path(rec["path"]).suffix
    print(f"file: {rec['id']} ({rec['lang']}, {text.count(chr(10))} lines, 5 conflicts)")
    bench = Bench()
    await bench.client.start_io(sys.executable, "-m", "splice.lsp")
    options: dict[str, Any] = {"resolver": args.resolver}
    if args.model_path:
        options["modelPath"] = args.model_path
    caps = types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)
        )
    )
    started = time.perf_counter()
    await bench.client.initialize_async(
        types.InitializeParams(capabilities=caps, initialization_options=options)
    )
    bench.client.initialized(types.InitializedParams())
    print(f"initialize (loads the resolver): {(time.perf_counter() - started) * 1000:.0f} ms")
    status = await bench.client.workspace_execute_command_async(
        types.ExecuteCommandParams("splice.status")
    )
    print(f"resolver: {status['resolver']}, torch loaded: {status['torchLoaded']}")

    opens: list[float] = []
    first_actions: list[float] = []
    actions: list[float] = []
    changes: list[float] = []
    for i in range(args.warmup + args.rounds):
        uri = Path(f"/tmp/splice-bench/{i}/file{suffix}").as_uri()
        took, diags = await bench.open(uri, text)
        assert len(diags) == 5, f"expected 5 diagnostics, got {len(diags)}"
        lines = [d.range.start.line + 1 for d in diags]
        first = await bench.action(uri, lines[0])
        more = [await bench.action(uri, line) for line in lines]
        edit = await bench.change(uri, 2, types.Position(lines[2], 0))
        bench.close(uri)
        if i >= args.warmup:
            opens.append(took)
            first_actions.append(first)
            actions.extend(more)
            changes.append(edit)
    print(f"didOpen -> diagnostics   {summary(opens)}")
    print(f"codeAction (first)       {summary(first_actions)}")
    print(f"codeAction               {summary(actions)}")
    print(f"didChange -> diagnostics {summary(changes)}")
    await bench.client.shutdown_async(None)
    bench.client.exit(None)
    await bench.client.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--resolver", default="auto")
    parser.add_argument("--model-path")
    parser.add_argument("--big", action="store_true", help="the big-file and burst case")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
