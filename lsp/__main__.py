"""``python -m splice.lsp``: serve the Splice language server over stdio."""

from splice.lsp.server import main

if __name__ == "__main__":
    main()
