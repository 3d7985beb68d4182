"""The Splice language server (issue 4)."""
