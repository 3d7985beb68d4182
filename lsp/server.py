"""The pygls server: document sync, configuration, and one small handler per LSP feature.

Each handler reads the :class:`~splice.lsp.analysis.Analysis` of the document's current version
(computed once per version, on open or change, when diagnostics are published) and builds its
answer from it. Errors are logged to the client (window/logMessage) and never stop the server.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from splice.lsp import actions, diagnostics, hover, lens
from splice.lsp.analysis import Analysis, analyze
from splice.lsp.edits import text_edit, workspace_edit
from splice.lsp.engine import Engine
from splice.lsp.settings import SECTION, Settings

from splice import __version__

#: The command that reports the server's state (resolver, threshold, whether torch is loaded).
STATUS = "splice.status"


class SpliceServer(LanguageServer):
    """The language server with its settings, loaded resolver and per-document analyses."""

    def __init__(self) -> None:
        super().__init__(
            "splice", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental
        )
        self.settings = Settings()
        self._engine: Engine | None = None
        self.analyses: dict[str, Analysis] = {}
        #: Per document URI: the base, ours and theirs versions in git's index (None: none).
        self.stages: dict[str, tuple[str, str, str] | None] = {}

    # ------------------------------------------------------------------ helpers

    def log(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        """Tell the client (its log), and stderr when the client cannot be reached."""
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
                from splice.cli.resolve import index_stages

                try:
                    found = index_stages(path)
                except Exception as exc:
                    self.log(f"cannot read git's index for {path}: {exc}")
            self.stages[uri] = found
        return self.stages[uri]

    def analysis(self, uri: str) -> Analysis | None:
        """The analysis of the open document's current version (None if it failed)."""
        doc = self.workspace.get_text_document(uri)
        cached = self.analyses.get(uri)
        if cached is not None and cached.version == doc.version and doc.version is not None:
            return cached
        try:
            text = doc.source
            path = doc.path if uri.startswith("file:") else None
            engine = self.engine
            result = analyze(
                text,
                uri=uri,
                version=doc.version,
                path=path,
                engine=engine,
                threshold=engine.threshold(self.settings),
                stages=lambda: self._stages(uri, path),
                encoding=str(self.workspace.position_encoding or types.PositionEncodingKind.Utf16),
            )
        except Exception as exc:
            detail = "".join(traceback.format_exception(exc)).rstrip()
            self.log(f"cannot analyse {uri}: {detail}", types.MessageType.Error)
            return None
        self.analyses[uri] = result
        return result

    def publish(self, uri: str) -> None:
        """Send the document's diagnostics (none when disabled or when the markers are gone)."""
        found = self.analysis(uri)
        items = diagnostics.diagnostics(found) if found and self.settings.diagnostics else []
        version = found.version if found else None
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=items, version=version)
        )

    def refresh(self) -> None:
        """Recompute every open document after a settings change."""
        for uri in list(self.workspace.text_documents):
            self.publish(uri)
        ws = self.client_capabilities.workspace
        if ws is not None and ws.code_lens is not None and ws.code_lens.refresh_support:
            self.workspace_code_lens_refresh(None)


server = SpliceServer()


@server.feature(types.INITIALIZE)
def initialize(ls: SpliceServer, params: types.InitializeParams) -> None:
    """Read initializationOptions and load the resolver now, so the first answer is fast."""
    ls.configure(params.initialization_options)
    ls.log(f"resolver {ls.engine.name}", types.MessageType.Info)


@server.feature(types.INITIALIZED)
def initialized(ls: SpliceServer, params: types.InitializedParams) -> None:
    """Run the resolver once, so that the first document is answered at full speed."""
    ls.engine.warm()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: SpliceServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.stages.pop(params.text_document.uri, None)
    ls.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: SpliceServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.publish(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: SpliceServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)
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
def code_action(ls: SpliceServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    found = ls.analysis(params.text_document.uri)
    return actions.code_actions(found, params, ls.document_changes) if found else []


@server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
def code_lens(ls: SpliceServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    found = ls.analysis(params.text_document.uri)
    return lens.lenses(found) if found else []


@server.feature(types.TEXT_DOCUMENT_HOVER)
def on_hover(ls: SpliceServer, params: types.HoverParams) -> types.Hover | None:
    found = ls.analysis(params.text_document.uri)
    return hover.hover(found, params.position.line) if found else None


@server.command(lens.APPLY)
async def apply_suggestion(ls: SpliceServer, *args: Any) -> dict[str, Any]:
    """Apply the top suggestion of the conflict at ``args = [uri, line]`` (workspace/applyEdit)."""
    if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
        return {"applied": False, "reason": "expected arguments [uri, line]"}
    found = ls.analysis(args[0])
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
    """The resolver in use, the threshold, the settings, and whether torch got imported."""
    engine = ls.engine
    return {
        "version": __version__,
        "resolver": engine.name,
        "threshold": engine.threshold(ls.settings),
        "diagnostics": ls.settings.diagnostics,
        "modelPath": ls.settings.model_path,
        "torchLoaded": "torch" in sys.modules,
    }


def main() -> None:
    """Serve over stdio until the client exits."""
    server.start_io()
