"""The Splice language server (issue 4): conflict markers as diagnostics, actions, lenses, hovers.

``splice lsp`` (or ``python -m splice.lsp``) serves it over stdio. Modules, one concept each:
:mod:`.settings` (client configuration), :mod:`.positions` (offsets and LSP positions),
:mod:`.engine` (the resolver, kept loaded, and its answer cache), :mod:`.analysis` (one document
version's conflicts and suggestions), :mod:`.edits`, :mod:`.diagnostics`, :mod:`.actions`,
:mod:`.lens`, :mod:`.hover`, and :mod:`.server` (the pygls server wiring them up: its own
frame reader, so every request gets a reply and a bad frame is skipped, and one worker thread
for analyses, debounced and cancelled when stale).

Nothing here imports torch: the neural resolver runs on onnxruntime.
"""
