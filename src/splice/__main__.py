"""``python -m splice``."""

from splice.entry import main

main()
