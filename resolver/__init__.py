"""The resolver pipeline: line merge, markers, tokens, token merge, patterns, policy."""
