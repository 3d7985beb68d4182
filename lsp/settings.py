"""The server's settings, read from initializationOptions and workspace/didChangeConfiguration.

Keys (camelCase, at the top level or under a ``"splice"`` section):

- ``allowDiscard`` (bool, default false): apply (fix-all, the preferred action) answers that drop
  one side's edits when they clear the threshold below, like the rest; by default they need the
  resolver's stricter calibrated threshold, or stay suggestions;
- ``confidenceThreshold`` (0..1, default: none, the resolver's calibrated thresholds by group of
  answer, as the driver applies them): one threshold of your own; an answer that keeps both
  sides' edits and is at least this sure is "confident" (named in diagnostics, applied by
  fix-all);
- ``debounceMs`` (0..10000, default 150): after a change, wait this long without another change
  before analysing the document (a burst of keystrokes is analysed once, at its last version);
- ``diagnostics`` (bool, default true): publish one diagnostic per conflict;
- ``modelPath`` (folder with ``model.onnx``, ``tokenizer.json``, ``calibration.json``): use the
  neural resolver from there (falling back to ``token-merge`` when it cannot be loaded);
- ``resolver`` (a registered resolver name, default ``auto``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from splice.models.serving import DEFAULT_RESOLVER

#: The section name clients use for Splice's settings.
SECTION = "splice"


@dataclass(frozen=True)
class Settings:
    """What the client configured; None leaves a value to the resolver's default."""

    allow_discard: bool = False
    confidence_threshold: float | None = None
    debounce_ms: int = 150
    diagnostics: bool = True
    model_path: str | None = None
    resolver: str = DEFAULT_RESOLVER

    @property
    def engine_key(self) -> tuple[str, str | None]:
        """What selects the resolver (a change reloads it)."""
        return (self.resolver, self.model_path)

    def updated(self, raw: Any) -> tuple[Settings, list[str]]:
        """These settings with the values of ``raw`` applied, and a message per bad value.

        ``raw`` is a dict (possibly with a ``"splice"`` section) or anything else (ignored).
        """
        if not isinstance(raw, dict):
            return self, []
        section = raw.get(SECTION)
        if isinstance(section, dict):
            raw = section
        new, problems = self, []
        if "allowDiscard" in raw:
            value = raw["allowDiscard"]
            if isinstance(value, bool):
                new = replace(new, allow_discard=value)
            else:
                problems.append(f"allowDiscard must be true or false, not {value!r}")
        if "confidenceThreshold" in raw:
            value = raw["confidenceThreshold"]
            if value is None:
                new = replace(new, confidence_threshold=None)
            elif isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
                new = replace(new, confidence_threshold=float(value))
            else:
                problems.append(f"confidenceThreshold must be a number in [0, 1], not {value!r}")
        if "debounceMs" in raw:
            value = raw["debounceMs"]
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and 0 <= value <= 10000
            ):
                new = replace(new, debounce_ms=int(value))
            else:
                problems.append(
                    f"debounceMs must be a number of milliseconds in [0, 10000], not {value!r}"
                )
        if "diagnostics" in raw:
            value = raw["diagnostics"]
            if isinstance(value, bool):
                new = replace(new, diagnostics=value)
            else:
                problems.append(f"diagnostics must be true or false, not {value!r}")
        if "modelPath" in raw:
            value = raw["modelPath"]
            if value is None or (isinstance(value, str) and value):
                new = replace(new, model_path=value)
            else:
                problems.append(f"modelPath must be a folder path, not {value!r}")
        if "resolver" in raw:
            value = raw["resolver"]
            if isinstance(value, str) and value:
                new = replace(new, resolver=value)
            else:
                problems.append(f"resolver must be a resolver name, not {value!r}")
        return new, problems
