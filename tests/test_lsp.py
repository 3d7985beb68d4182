"""End-to-end tests of ``splice lsp``: a real LSP client (pytest-lsp) talking to the server over
stdio, on real conflicts from ../shared/data/merges rendered with markers.

The resolver is pinned to the model-free ``token-merge`` (initializationOptions) so the answers do
not depend on whether a neural model is installed; the tests that need every conflict to have a
suggestion pin ``theirs`` instead.
"""

from __future__ import annotations

import json
import lzma
import re
import sys
import time
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from splice.resolver.chunks import Conflict, Stable, split_lines
from splice.resolver.linemerge import merge_lines
from splice.resolver.markers import parse, render

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not found at {DATA}")
SERVER = [sys.executable, "-m", "splice.lsp"]
GRAMMARS = ("python", "java", "javascript", "typescript", "go", "csharp")
LABELS = ("HEAD", "merged common ancestors", "feature")
#: Stands for the path of the ``tiny_model`` fixture in initializationOptions.
TINY = "<tiny model>"
#: How long a test waits for the server's diagnostics (generous: CI machines are shared).
WAIT_S = 30.0


# --------------------------------------------------------------------------- data


@cache
def real_record() -> dict[str, Any]:
    """The first real record (shards by name) with 2-5 conflicts in a language with a grammar,
    LF line endings, under 3,000 lines, where token-merge suggests something for some conflict."""
    from splice.lsp.analysis import analyze
    from splice.lsp.engine import Engine
    from splice.lsp.settings import Settings

    engine = Engine(Settings(resolver="token-merge"), print)
    for shard in sorted(DATA.glob("*.jsonl.xz")):
        with lzma.open(shard, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                texts = rec["base"] + rec["ours"] + rec["theirs"]
                if rec["lang"] not in GRAMMARS or not 2 <= rec["n_conflicts"] <= 5:
                    continue
                if "\r" in texts or rec["ours"].count("\n") > 3000:
                    continue
                found = analyze(
                    marked(rec, "diff3"),
                    uri="file:///x",
                    version=1,
                    path=rec["path"],
                    engine=engine,
                    min_confidence=0.0,
                )
                if any(v.candidates for v in found.conflicts):
                    return rec
    pytest.skip("no suitable record in the data set")


def marked(rec: dict[str, Any], style: str, marker_size: int = 7) -> str:
    """The record's merge with conflict markers, as ``git merge-file -p`` prints it."""
    base = split_lines(rec["base"])
    chunks = merge_lines(base, split_lines(rec["ours"]), split_lines(rec["theirs"]), style)
    return render(chunks, style, marker_size, LABELS, base_lines=base)  # type: ignore[arg-type]


def merged_with(rec: dict[str, Any], style: str, side: str) -> str:
    """The record's merge with every conflict replaced by ``side``."""
    base = split_lines(rec["base"])
    chunks = merge_lines(base, split_lines(rec["ours"]), split_lines(rec["theirs"]), style)
    return "".join(
        "".join(c.units if isinstance(c, Stable) else getattr(c, side))
        for c in chunks
        if isinstance(c, Stable | Conflict)
    )


# --------------------------------------------------------------------------- text edits


def offset_at(text: str, pos: types.Position) -> int:
    """The offset of an LSP position (UTF-16 characters; lines end at CRLF, CR or LF)."""
    lines = re.split(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)", text)
    start = sum(len(x) for x in lines[: pos.line])
    line = lines[pos.line] if pos.line < len(lines) else ""
    units = 0
    for i, ch in enumerate(line):
        if units >= pos.character:
            return start + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return start + len(line)


def edits_of(edit: types.WorkspaceEdit, uri: str) -> list[types.TextEdit]:
    """The text edits of ``uri`` in a workspace edit (either form)."""
    if edit.document_changes:
        return [
            e
            for change in edit.document_changes
            if isinstance(change, types.TextDocumentEdit) and change.text_document.uri == uri
            for e in change.edits
        ]
    return list((edit.changes or {}).get(uri, []))


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    """``text`` with non-overlapping edits applied."""
    spans = sorted(
        ((offset_at(text, e.range.start), offset_at(text, e.range.end), e.new_text) for e in edits),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


# --------------------------------------------------------------------------- client


CAPABILITIES = types.ClientCapabilities(
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True,
        workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True),
        configuration=True,
        code_lens=types.CodeLensWorkspaceClientCapabilities(refresh_support=True),
    ),
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            code_action_literal_support=types.ClientCodeActionLiteralOptions(
                code_action_kind=types.ClientCodeActionKindOptions(
                    value_set=[types.CodeActionKind.QuickFix, types.CodeActionKind.Source]
                )
            )
        ),
        hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
    ),
)


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A client whose server got the initializationOptions of :func:`options` (default: the
    token-merge resolver)."""
    options = dict(getattr(request, "param", {"resolver": "token-merge"}))
    if options.get("modelPath") == TINY:
        options["modelPath"] = str(request.getfixturevalue("tiny_model"))
    applied: list[types.ApplyWorkspaceEditParams] = []

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    @lsp_client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def lens_refresh(params: None) -> None:
        return None

    lsp_client.applied = applied  # type: ignore[attr-defined]
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options=options)
    )
    yield
    await lsp_client.shutdown_session()


def options(value: dict[str, Any]) -> pytest.MarkDecorator:
    """Start the test's server with these initializationOptions."""
    return pytest.mark.parametrize("client", [value], indirect=True, ids=["options"])


class Doc:
    """An open document on the client side, kept in sync with the server."""

    def __init__(self, client: LanguageClient, path: str, text: str) -> None:
        self.client = client
        self.uri = Path(path).absolute().as_uri()
        self.text = text
        self.version = 1

    async def open(self) -> list[types.Diagnostic]:
        item = types.TextDocumentItem(self.uri, "plaintext", self.version, self.text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        return await self.diagnostics()

    async def diagnostics(self) -> list[types.Diagnostic]:
        """Wait for this document's next diagnostics."""
        while True:
            params = await _wait(
                self.client.wait_for_notification("textDocument/publishDiagnostics")
            )
            if params.uri == self.uri:
                return list(params.diagnostics)

    async def change(self, edits: list[types.TextEdit]) -> list[types.Diagnostic]:
        """Send ``edits`` (applied in order) as incremental changes; the new diagnostics."""
        changes = []
        for e in edits:
            self.text = apply_edits(self.text, [e])
            changes.append(types.TextDocumentContentChangePartial(range=e.range, text=e.new_text))
        self.version += 1
        ident = types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(ident, changes))
        return await self.diagnostics()

    async def apply(self, edit: types.WorkspaceEdit) -> list[types.Diagnostic]:
        """Apply a workspace edit the way an editor does (all edits against this version)."""
        if edit.document_changes:
            change = edit.document_changes[0]
            assert isinstance(change, types.TextDocumentEdit)
            assert change.text_document.version == self.version
        edits = edits_of(edit, self.uri)
        new = apply_edits(self.text, edits)
        whole = types.Range(types.Position(0, 0), _end(self.text))
        diags = await self.change([types.TextEdit(whole, new)])
        assert self.text == new
        return diags

    async def actions(self, line: int, only: list[str] | None = None) -> list[types.CodeAction]:
        pos = types.Position(line, 0)
        params = types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(self.uri),
            range=types.Range(pos, pos),
            context=types.CodeActionContext(diagnostics=[], only=only),
        )
        found = await _wait(self.client.text_document_code_action_async(params))
        return [a for a in found or [] if isinstance(a, types.CodeAction)]


async def _wait(awaitable: Any) -> Any:
    import asyncio

    return await asyncio.wait_for(awaitable, WAIT_S)


def _end(text: str) -> types.Position:
    lines = re.split(r"\r\n|\r|\n", text)
    return types.Position(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)


def region(text: str, diag: types.Diagnostic) -> str:
    return text[offset_at(text, diag.range.start) : offset_at(text, diag.range.end)]


# --------------------------------------------------------------------------- tests


@needs_data
@pytest.mark.asyncio
@pytest.mark.parametrize("style", ["merge", "diff3", "zdiff3"])
async def test_one_diagnostic_per_conflict(client: LanguageClient, style: str) -> None:
    rec = real_record()
    text = marked(rec, style)
    conflicts = parse(text).conflicts
    assert conflicts
    diags = await Doc(client, rec["path"].replace("/", "_"), text).open()
    assert len(diags) == len(conflicts)
    for diag, conflict in zip(diags, conflicts, strict=True):
        assert diag.severity == types.DiagnosticSeverity.Information
        assert diag.source == "splice"
        assert diag.message.startswith("Merge conflict: ")
        assert "suggested resolution" in diag.message or "no confident suggestion" in diag.message
        assert region(text, diag) == conflict.text()
        assert diag.range.start.line == conflict.start


@needs_data
@pytest.mark.asyncio
async def test_each_action_replaces_exactly_the_conflict(client: LanguageClient) -> None:
    rec = real_record()
    text = marked(rec, "diff3")
    doc = Doc(client, "x/" + Path(rec["path"]).name, text)
    diags = await doc.open()
    target = next(
        i
        for i, d in enumerate(diags)
        if "suggested resolution" in d.message or "best:" in d.message
    )
    conflict = parse(text).conflicts[target]
    ours, base, theirs = ("".join(x or ()) for x in (conflict.ours, conflict.base, conflict.theirs))
    found = {a.title: a for a in await doc.actions(diags[target].range.start.line + 1)}
    expected = {
        "Take ours": ours,
        "Take theirs": theirs,
        "Take both (ours then theirs)": ours + theirs,
        "Take both (theirs then ours)": theirs + ours,
        "Take base": base,
        "Take none": "",
    }
    assert set(expected) <= set(found)
    suggestions = [t for t in found if t.startswith("Apply suggestion: ")]
    assert 1 <= len(suggestions) <= 3
    assert all(
        re.fullmatch(r"Apply suggestion: \S.* \(confidence \d\.\d\d\)", t) for t in suggestions
    )
    start, end = (
        offset_at(text, diags[target].range.start),
        offset_at(text, diags[target].range.end),
    )
    for title, action in found.items():
        if action.kind != types.CodeActionKind.QuickFix:
            continue
        assert action.edit is not None
        (edit,) = edits_of(action.edit, doc.uri)
        new = apply_edits(text, [edit])
        assert new[:start] == text[:start] and new[len(new) - (len(text) - end) :] == text[end:]
        if title in expected:
            assert edit.new_text == expected[title], title
    # apply the first suggestion: one conflict fewer, the others untouched
    action = found[suggestions[0]]
    assert action.edit is not None
    after = await doc.apply(action.edit)
    assert len(after) == len(diags) - 1
    assert [d.message for d in after] == [d.message for i, d in enumerate(diags) if i != target]


@needs_data
@pytest.mark.asyncio
@pytest.mark.parametrize("title", ["Take ours", "Take theirs"])
async def test_taking_a_side_everywhere_gives_that_side(client: LanguageClient, title: str) -> None:
    rec = real_record()
    doc = Doc(client, "side/" + Path(rec["path"]).name, marked(rec, "merge"))
    diags = await doc.open()
    while diags:
        found = {a.title: a for a in await doc.actions(diags[0].range.start.line)}
        edit = found[title].edit
        assert edit is not None
        diags = await doc.apply(edit)
    side = "ours" if title == "Take ours" else "theirs"
    assert doc.text == merged_with(rec, "merge", side)


@needs_data
@pytest.mark.asyncio
@options({"resolver": "theirs", "confidenceThreshold": 0.5, "allowDiscard": True})
async def test_fix_all_applies_every_confident_suggestion(client: LanguageClient) -> None:
    rec = real_record()
    text = marked(rec, "zdiff3")
    doc = Doc(client, "fix/" + Path(rec["path"]).name, text)
    diags = await doc.open()
    assert all("suggested resolution theirs (confidence 1.00)" in d.message for d in diags)
    (action,) = await doc.actions(0, only=[types.CodeActionKind.SourceFixAll])
    assert action.kind == "source.fixAll.splice"
    assert action.edit is not None
    edits = edits_of(action.edit, doc.uri)
    assert edits and len(edits) <= len(diags)
    left = await doc.apply(action.edit)
    assert len(left) == len(diags) - len(edits)
    if not left:  # every conflict took theirs
        assert doc.text == merged_with(rec, "zdiff3", "theirs")


@needs_data
@pytest.mark.asyncio
@options({"resolver": "theirs", "allowDiscard": True})
async def test_code_lens_runs_the_suggestion_through_apply_edit(client: LanguageClient) -> None:
    rec = real_record()
    doc = Doc(client, "lens/" + Path(rec["path"]).name, marked(rec, "diff3"))
    diags = await doc.open()
    lenses = await _wait(
        client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(doc.uri))
        )
    )
    assert len(lenses) == len(diags)
    first = lenses[0].command
    assert first is not None and first.command == "splice.applySuggestion"
    assert first.title == "Splice: apply theirs (confidence 1.00)"
    result = await _wait(
        client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=first.command, arguments=first.arguments)
        )
    )
    assert result["applied"] is True
    (params,) = client.applied  # type: ignore[attr-defined]
    (edit,) = edits_of(params.edit, doc.uri)
    conflict = parse(doc.text).conflicts[0]
    assert edit.new_text == "".join(conflict.theirs)
    left = await doc.apply(params.edit)
    assert len(left) == len(diags) - 1


@needs_data
@pytest.mark.asyncio
async def test_hover_shows_token_view_and_candidates(client: LanguageClient) -> None:
    rec = real_record()
    doc = Doc(client, "hover/" + Path(rec["path"]).name, marked(rec, "diff3"))
    diags = await doc.open()
    pos = types.Position(diags[0].range.start.line + 1, 0)
    hover = await _wait(
        client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(doc.uri), pos)
        )
    )
    assert isinstance(hover.contents, types.MarkupContent)
    assert hover.contents.kind == types.MarkupKind.Markdown
    text = hover.contents.value
    assert f"conflict 1 of {len(diags)} (diff3 markers)" in text
    assert "Token changes against the base" in text and "- *ours*:" in text
    assert "Token-level merge:" in text and "Candidates" in text
    outside = types.Position(max(0, diags[0].range.start.line - 1), 0)
    if diags[0].range.start.line > 0:
        none = await _wait(
            client.text_document_hover_async(
                types.HoverParams(types.TextDocumentIdentifier(doc.uri), outside)
            )
        )
        assert none is None


SMALL = (
    "def f():\n"
    "<<<<<<< ours\n"
    "    return 1\n"
    "||||||| base\n"
    "    return 0\n"
    "=======\n"
    "    return 2\n"
    ">>>>>>> theirs\n"
    "\n"
    "x = 1\n"
    "<<<<<<<<< ours\n"  # marker size 9
    "y = [1, 2]\n"
    "||||||||| base\n"
    "y = [1]\n"
    "=========\n"
    "y = [0, 1]\n"
    ">>>>>>>>> theirs\n"
)


@pytest.mark.asyncio
async def test_edits_while_resolving(client: LanguageClient) -> None:
    doc = Doc(client, "edit/small.py", SMALL)
    diags = await doc.open()
    assert [d.range.start.line for d in diags] == [1, 10]
    # typing inside a conflict keeps it; the diagnostic follows the text
    diags = await doc.change(
        [types.TextEdit(types.Range(types.Position(2, 12), types.Position(2, 12)), "0")]
    )
    assert len(diags) == 2 and "    return 10\n" in region(doc.text, diags[0])
    # inserting lines above moves both diagnostics
    diags = await doc.change(
        [types.TextEdit(types.Range(types.Position(0, 0), types.Position(0, 0)), "# a\n# b\n")]
    )
    assert [d.range.start.line for d in diags] == [3, 12]
    # deleting the closing marker by hand breaks the first conflict: no diagnostic for it
    line = doc.text.splitlines().index(">>>>>>> theirs")
    cut = types.Range(types.Position(line, 0), types.Position(line + 1, 0))
    diags = await doc.change([types.TextEdit(cut, "")])
    assert [d.range.start.line for d in diags] == [11]
    # resolving the last one by hand clears everything
    (diag,) = diags
    diags = await doc.change([types.TextEdit(diag.range, "y = [0, 1, 2]\n")])
    assert diags == []
    assert "y = [0, 1, 2]\n" in doc.text


MALFORMED = [
    "a\n<<<<<<< ours\nb\n=======\nc\n",  # no closing marker
    "a\n<<<<<<< ours\nb\n>>>>>>> theirs\n",  # no separator
    "=======\n>>>>>>> theirs\n<<<<<<< ours\n",  # out of order
    "<<<<<<\nx\n======\ny\n>>>>>>\n",  # markers too short
    "<<<<<<< ours\r\nx\r=======\ry\r>>>>>>> theirs",  # lone CRs: not marker lines for git
    "\ufeff<<<<<<< ours\nx\n=======\ny\n>>>>>>>> theirs\n",  # closing marker of another size
    "",
]


@pytest.mark.asyncio
async def test_malformed_markers_get_no_diagnostics(client: LanguageClient) -> None:
    for i, text in enumerate(MALFORMED):
        doc = Doc(client, f"bad/{i}.py", text)
        assert await doc.open() == [], text
        assert await doc.actions(0) == []
    # a stray opener: only the complete conflict after it counts
    doc = Doc(client, "bad/stray.py", "<<<<<<< ours\n<<<<<<< ours\nx\n=======\ny\n>>>>>>> theirs\n")
    (diag,) = await doc.open()
    assert diag.range.start.line == 1
    # a good conflict after a broken one is still found
    doc = Doc(client, "bad/mixed.txt", MALFORMED[0] + SMALL.split("\n\n")[0] + "\n")
    (diag,) = await doc.open()
    assert region(doc.text, diag).startswith("<<<<<<< ours\n    return 1\n")
    # half-deleting its markers (the closing one) removes the diagnostic; the server keeps answering
    end = diag.range.end.line
    closing = types.Range(types.Position(end - 1, 0), types.Position(end, 0))
    diags = await doc.change([types.TextEdit(closing, "")])
    assert diags == []
    assert await doc.actions(diag.range.start.line) == []


@pytest.mark.asyncio
async def test_language_without_grammar(client: LanguageClient) -> None:
    text = "title\n<<<<<<< ours\nred apples\n=======\ngreen apples\n>>>>>>> theirs\nend\n"
    doc = Doc(client, "notes/file.txt", text)
    (diag,) = await doc.open()
    assert diag.source == "splice"
    titles = [a.title for a in await doc.actions(2)]
    for title in ("Take ours", "Take theirs", "Take both (ours then theirs)", "Take none"):
        assert title in titles
    assert "Take base" not in titles  # merge-style markers carry no base
    text3 = text.replace("=======", "||||||| base\napples\n=======")
    doc3 = Doc(client, "notes/file.rb", text3)
    (diag,) = await doc3.open()
    found = {a.title: a for a in await doc3.actions(2)}
    assert "Take base" in found
    edit = found["Take base"].edit
    assert edit is not None
    await doc3.apply(edit)
    assert doc3.text == "title\napples\nend\n"


@pytest.mark.asyncio
async def test_file_of_20000_lines(client: LanguageClient) -> None:
    body = [f"line {i}\n" for i in range(20_000)]
    block = "<<<<<<< ours\nx = 1\n||||||| base\nx = 0\n=======\nx = 2\n>>>>>>> theirs\n"
    for at in (19_000, 10_000, 5, 0):
        body.insert(at, block)
    doc = Doc(client, "big/file.py", "".join(body))
    started = time.perf_counter()
    diags = await doc.open()
    assert len(diags) == 4
    assert time.perf_counter() - started < WAIT_S
    last = diags[-1]
    assert region(doc.text, last) == block
    found = {a.title: a for a in await doc.actions(last.range.start.line)}
    edit = found["Take theirs"].edit
    assert edit is not None
    diags = await doc.apply(edit)
    assert len(diags) == 3 and doc.text.count("x = 2\n") == 4


@pytest.mark.asyncio
@options({"resolver": "theirs", "diagnostics": False, "allowDiscard": True})
async def test_configuration(client: LanguageClient) -> None:
    doc = Doc(client, "conf/a.py", SMALL)
    assert await doc.open() == []  # diagnostics switched off at initialization
    settings = {"splice": {"diagnostics": True, "confidenceThreshold": 1.5}}
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings))
    diags = await doc.diagnostics()
    assert len(diags) == 2 and "suggested resolution theirs (confidence 1.00)" in diags[0].message
    assert any("confidenceThreshold" in m.message for m in client.log_messages)
    # pulled settings (an empty push): the threshold now rejects every suggestion
    client.set_configuration({"confidenceThreshold": 1.0, "resolver": "ours"}, section="splice")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(None))
    diags = await doc.diagnostics()
    assert "suggested resolution ours (confidence 1.00)" in diags[0].message
    status = await _wait(
        client.workspace_execute_command_async(types.ExecuteCommandParams("splice.status"))
    )
    assert status["resolver"] == "ours" and status["threshold"] == 1.0


@pytest.mark.asyncio
@options({"modelPath": "/nonexistent/model"})
async def test_missing_model_falls_back_and_loads_no_torch(client: LanguageClient) -> None:
    doc = Doc(client, "torch/a.py", SMALL)
    assert len(await doc.open()) == 2
    await doc.actions(1)
    status = await _wait(
        client.workspace_execute_command_async(types.ExecuteCommandParams("splice.status"))
    )
    assert status["resolver"] == "token-merge"
    assert status["torchLoaded"] is False
    assert any("/nonexistent/model" in m.message for m in client.log_messages)


@pytest.mark.asyncio
@options({"resolver": "auto"})
async def test_default_resolver_loads_no_torch(client: LanguageClient) -> None:
    doc = Doc(client, "torch/b.py", SMALL)
    await doc.open()
    status = await _wait(
        client.workspace_execute_command_async(types.ExecuteCommandParams("splice.status"))
    )
    assert status["torchLoaded"] is False


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random neural model exported to ONNX (building it needs torch; serving it not)."""
    torch = pytest.importorskip("torch", reason="building the tiny model needs torch")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    import shutil

    from splice.models.training.configuration import SpliceConfig
    from splice.models.training.export import export_onnx
    from splice.models.training.modeling import SpliceMergeModel

    out = tmp_path_factory.mktemp("lsp_tiny_model")
    torch.manual_seed(0)
    config = SpliceConfig(
        vocab_size=8192, hidden_size=32, num_layers=1, num_heads=2, max_position=128
    )
    SpliceMergeModel(config).eval().save_pretrained(out / "hf")
    export_onnx(out / "hf", out / "model.onnx")
    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "models" / "shipped" / "tokenizer.json", out / "tokenizer.json")
    calib = {"temperature": 1.0, "threshold": 0.5, "token_weight": 0.5, "max_len": 128}
    (out / "calibration.json").write_text(json.dumps(calib))
    return out


@needs_data
@pytest.mark.asyncio
@options({"modelPath": TINY})
async def test_neural_model_from_model_path(client: LanguageClient) -> None:
    rec = real_record()
    doc = Doc(client, "model/" + Path(rec["path"]).name, marked(rec, "diff3"))
    diags = await doc.open()
    status = await _wait(
        client.workspace_execute_command_async(types.ExecuteCommandParams("splice.status"))
    )
    # modelPath is an option of the registry's factory: the driver's ``auto``, with this model
    assert status["resolver"] == "auto" and status["torchLoaded"] is False
    assert status["threshold"] == 0.5  # the model's calibrated threshold
    assert len(diags) == len(parse(doc.text).conflicts)
    titles = [a.title for a in await doc.actions(diags[0].range.start.line)]
    suggestions = [t for t in titles if t.startswith("Apply suggestion: ")]
    assert len(suggestions) == 3  # the model's top 3


IMPORTS = (
    "<<<<<<< ours\n"
    "import json\n"
    "||||||| base\n"
    "=======\n"
    "import abc\n"
    ">>>>>>> theirs\n"
    "import os\n"
    "import sys\n"
    "\n"
    "\n"
    "def main():\n"
    "    return 0\n"
)


@pytest.mark.asyncio
async def test_merge_structurally_action_and_hover(client: LanguageClient) -> None:
    """The structured stage's answer is an action of its own, explained in the hover."""
    doc = Doc(client, "structured/app.py", IMPORTS)
    diags = await doc.open()
    assert len(diags) == 1
    line = diags[0].range.start.line + 1
    titles = [a.title for a in await doc.actions(line)]
    assert any(t.startswith("Apply suggestion: merged structurally") for t in titles)
    hover = await _wait(
        client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(doc.uri), types.Position(line, 0))
        )
    )
    text = hover.contents.value
    assert "| merged structurally" in text
    assert "Merged structurally: kept both: merged as members of" in text
