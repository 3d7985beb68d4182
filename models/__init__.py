"""Neural models of Splice (the merge-pattern classifier; issue 3)."""
