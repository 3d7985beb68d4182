"""git hooks and pre-commit integration (issue 5)."""
