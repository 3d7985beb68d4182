"""The code language model in the resolver: it scores every candidate and writes new ones.

For each hunk of a file the LM reads the resolution prompt (the file around the conflict, then
ours, base and theirs as diff3 shows them: :func:`~splice.models.serving.prompt.resolution_prompt`,
the same format it was trained on), once. Then

- :meth:`LMScorer.write` runs a beam search for the resolved lines; the texts it finishes that
  no other candidate has join the candidates as "written by the model";
- :meth:`LMScorer.score` gives every candidate (patterns, token merge, written) the
  log-probability of its text as the middle, the candidates of all hunks batched on the
  prompts' caches (:meth:`~splice.models.serving.lm.CodeLM.score_many`).

The scores become :data:`LM_FEATURES`, and :class:`LMRerank` (``rerank.json`` in the LM's
folder, fitted by ``scripts/eval_lm_resolver.py`` on validation repositories, never on the
repositories the LM was trained on) weighs them on top of the classifier's reranked
probabilities, as one more conditional logit over the hunk's candidates::

    score_i = softmax_i( log(p_i) + lm_features_i . weights )

``p_i`` is the classifier's reranked probability; a written candidate has none and starts from
:data:`WRITTEN_PRIOR` (its ``written`` weight says how much a written text is worth). Nothing
here imports torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from splice.models.serving.lm import CodeLM, GenerateOptions, KVCache
from splice.models.serving.prompt import conflict_contexts, resolution_prompt
from splice.resolver.chunks import Conflict, Stable, split_lines, text_key
from splice.resolver.resolvers import Hunk

#: One feature per name, in this order (``rerank.json: features`` must match).
LM_FEATURES = (
    "lm_log_prob",  # log-probability of the text (nats), minus the hunk's best
    "lm_log_prob_per_token",  # the same per token of the text (its end token included)
    "lm_is_best",  # the LM's most likely candidate of the hunk
    "written",  # written by the model (no pattern gives it)
)
#: The classifier probability a written candidate starts from (module doc).
WRITTEN_PRIOR = 1e-4
#: Prompts read in one batch at most (the graph returns logits at every position: 4 prompts of
#: 512 tokens are 67 MB of them).
PROMPTS_PER_RUN = 4
#: The file the weights live in, in the LM's folder.
RERANK_FILE = "rerank.json"
#: Environment variables that override ``rerank.json``'s cache method (a name of
#: :mod:`splice.models.merging.cache`, or ``none``: the window alone) and its budget (entries).
PRESS_ENV = "SPLICE_LM_PRESS"
CACHE_BUDGET_ENV = "SPLICE_LM_CACHE_BUDGET"
#: The smallest cache budget accepted (entries per layer).
MIN_CACHE_BUDGET = 16


@dataclass(frozen=True)
class LMRerank:
    """``rerank.json``: the weights of :data:`LM_FEATURES` and how candidates are written."""

    weights: tuple[float, ...]
    #: Write candidates with a beam search of this many beams (0: score only).
    beams: int = 3
    #: Tokens written at most: ``slack`` more than the longer side, within ``max_new_tokens``.
    max_new_tokens: int = 160
    slack: int = 24
    #: Whole files: the prompt takes the file up to the model's positions, its text before the
    #: conflict read through a cache compressed by this method of
    #: :mod:`splice.models.merging.cache` to ``cache_budget`` entries (None: the window of
    #: ``lm.json``'s budget alone).
    press: str | None = None
    cache_budget: int = 256
    #: Where and how the weights were fitted, in words (a report, not read).
    fitted_on: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LMRerank:
        if tuple(data.get("features", ())) != LM_FEATURES:
            raise ValueError("rerank.json features do not match this version of splice")
        weights = tuple(float(x) for x in data["weights"])
        if len(weights) != len(LM_FEATURES) or not all(math.isfinite(w) for w in weights):
            raise ValueError("rerank.json: one finite weight per feature")
        beams, cap = int(data.get("beams", 3)), int(data.get("max_new_tokens", 160))
        slack = int(data.get("slack", 24))
        if beams < 0 or cap < 1 or slack < 0:
            raise ValueError(f"rerank.json: beams {beams}, max_new_tokens {cap}, slack {slack}")
        rerank = cls(
            weights,
            beams=beams,
            max_new_tokens=cap,
            slack=slack,
            fitted_on=str(data.get("fitted_on", "")),
        )
        return rerank.reading(data.get("press"), int(data.get("cache_budget", 256)), "rerank.json")

    def reading(self, press: str | None, cache_budget: int, source: str) -> LMRerank:
        """These weights with whole files read through ``press`` at ``cache_budget`` entries
        (``press`` None: the window alone); a ValueError naming ``source`` when either is bad."""
        if press is not None:
            from splice.models.merging.cache import cache_method_names

            if press not in cache_method_names():
                known = ", ".join(cache_method_names())
                raise ValueError(f"{source}: press {press!r} is not one of {known}")
            if cache_budget < MIN_CACHE_BUDGET:
                raise ValueError(f"{source}: cache budget {cache_budget} below {MIN_CACHE_BUDGET}")
        return replace(self, press=None if press is None else str(press), cache_budget=cache_budget)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(LM_FEATURES), **asdict(self), "weights": list(self.weights)}

    @classmethod
    def load(cls, folder: str | Path) -> LMRerank | None:
        """The weights in ``folder`` (None when it has no ``rerank.json``)."""
        path = Path(folder) / RERANK_FILE
        if not path.is_file():
            return None
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, folder: str | Path) -> None:
        text = json.dumps(self.to_json(), indent=2) + "\n"
        (Path(folder) / RERANK_FILE).write_text(text, encoding="utf-8")


def with_environment(rerank: LMRerank) -> LMRerank:
    """``rerank`` with the cache method and budget of :data:`PRESS_ENV` and
    :data:`CACHE_BUDGET_ENV` where set (the user's choice over the fitted one)."""
    press_env, budget_env = os.environ.get(PRESS_ENV), os.environ.get(CACHE_BUDGET_ENV)
    if press_env is None and budget_env is None:
        return rerank
    press = rerank.press if press_env is None else press_env.strip()
    if press is not None and press.lower() in ("", "none", "off"):
        press = None
    budget = rerank.cache_budget
    if budget_env is not None:
        try:
            budget = int(budget_env)
        except ValueError:
            raise ValueError(f"{CACHE_BUDGET_ENV}={budget_env!r} is not a number") from None
    return rerank.reading(press, budget, PRESS_ENV if press_env is not None else CACHE_BUDGET_ENV)


def lm_features(log_probs: np.ndarray, lengths: Sequence[int], written: Sequence[bool]) -> Any:
    """(n, len(LM_FEATURES)) features of a hunk's n candidates from their log-probabilities,
    token counts (end token included) and whether the model wrote them."""
    lp = np.asarray(log_probs, dtype=np.float64).reshape(-1)
    if len(lp) == 0:
        return np.zeros((0, len(LM_FEATURES)))
    best = lp.max()
    rows = [
        [x - best, x / max(n, 1), float(x == best), float(w)]
        for x, n, w in zip(lp, lengths, written, strict=True)
    ]
    return np.array(rows, dtype=np.float64)


@dataclass(frozen=True)
class HunkPrompt:
    """A hunk's resolution prompt, the token room left for its middle, and how many of its last
    tokens (the conflict and the middle marker) are read whole when the rest is compressed."""

    ids: list[int]
    room: int
    tail: int = 0


class LMScorer:
    """The LM's scores and written candidates for a file's hunks (module doc)."""

    def __init__(self, lm: CodeLM, rerank: LMRerank) -> None:
        self.lm = lm
        self.rerank = rerank
        self.tokenizer = lm.tokenizer
        _ = lm.special  # LMUnavailable when the model cannot read a resolution prompt
        if rerank.press is not None and not lm.reads_queries(rerank.press):
            from splice.models.serving.lm import LMUnavailable

            raise LMUnavailable(
                f"press {rerank.press!r} needs queries, which {lm.model_dir} was exported without"
            )

    @classmethod
    def load(cls, folder: str | Path | None = None) -> LMScorer:
        """The LM of ``folder`` (default :func:`~splice.models.serving.lm.default_lm_dir`) with
        its ``rerank.json``; LMUnavailable when either is missing or broken."""
        from splice.models.serving.lm import LMUnavailable

        lm = CodeLM(folder)
        try:
            rerank = LMRerank.load(lm.model_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LMUnavailable(f"{lm.model_dir / RERANK_FILE}: {exc}") from exc
        if rerank is None:
            raise LMUnavailable(f"{lm.model_dir}: missing {RERANK_FILE} (the LM is not fitted)")
        try:
            rerank = with_environment(rerank)
        except ValueError as exc:
            raise LMUnavailable(str(exc)) from exc
        return cls(lm, rerank)

    def prompts(self, hunks: Sequence[Hunk], middle: Sequence[int]) -> list[HunkPrompt]:
        """Each hunk's prompt, leaving ``middle[i]`` tokens (and the end token) of the model's
        budget for what follows it."""
        contexts: dict[int, tuple[list[Conflict], list[tuple[str, str]]]] = {}
        out = []
        budget = self.lm.spec.max_positions
        if self.rerank.press is None:
            budget = min(self.lm.spec.budget, budget)
        ours = self.lm.special.ours
        for hunk, need in zip(hunks, middle, strict=True):
            before, after = _context(hunk, contexts)
            c = hunk.conflict
            ids = resolution_prompt(
                self.tokenizer,
                before,
                after,
                "".join(c.ours),
                "".join(c.base),
                "".join(c.theirs),
                budget=max(budget // 4, budget - need - 1),
            )
            out.append(HunkPrompt(ids, budget - len(ids), len(ids) - ids.index(ours)))
        return out

    def cache(self, prompts: Sequence[HunkPrompt]) -> KVCache | None:
        """The prompts' cache when whole files are read (each prompt's text before its conflict
        compressed to ``cache_budget`` entries, the rows stacked); None: the window alone, the
        caller prefills."""
        press = self.rerank.press
        if press is None:
            return None
        budget = self.rerank.cache_budget
        rows = [self.lm.prefill_compressed(p.ids, press, budget, tail=p.tail) for p in prompts]
        return KVCache.stacked(rows)

    def write(self, hunks: Sequence[Hunk]) -> list[list[tuple[tuple[str, ...], float]]]:
        """Per hunk, the texts the beam search finished (lines, log-probability), best first."""
        if self.rerank.beams <= 0:
            return [[] for _ in hunks]
        caps = [self._cap(h) for h in hunks]
        out = []
        for hunk, want, prompt in zip(hunks, caps, self.prompts(hunks, caps), strict=True):
            cap = max(1, min(want, prompt.room - 1))
            options = GenerateOptions(beams=self.rerank.beams, max_new_tokens=cap)
            found = self.lm.generate(prompt.ids, options, cache=self.cache([prompt]))
            texts = [(self.tokenizer.decode(g.ids), g.log_prob) for g in found if g.finished]
            out.append([(_as_lines(text, hunk), lp) for text, lp in texts])
        return out

    def _cap(self, hunk: Hunk) -> int:
        c = hunk.conflict
        longest = max(len(self.tokenizer.encode("".join(s))) for s in (c.ours, c.theirs))
        return min(self.rerank.max_new_tokens, longest + self.rerank.slack)

    def score(
        self, hunks: Sequence[Hunk], texts: Sequence[Sequence[tuple[str, ...]]]
    ) -> tuple[list[np.ndarray], list[list[int]]]:
        """Per hunk, the log-probability of each of its ``texts`` as the resolved lines, and
        their token counts (end token included). A hunk whose longest text does not fit after
        its prompt is not scored: all its scores are 0, so the LM changes nothing there."""
        ids = [[self.tokenizer.encode("".join(t)) for t in ts] for ts in texts]
        longest = [max((len(x) for x in row), default=0) for row in ids]
        prompts = self.prompts(hunks, longest)
        lengths = [[len(x) + 1 for x in row] for row in ids]
        rows = [i for i, row in enumerate(ids) if row and longest[i] < prompts[i].room]
        out = [np.zeros(len(row)) for row in ids]
        for start in range(0, len(rows), PROMPTS_PER_RUN):
            group = rows[start : start + PROMPTS_PER_RUN]
            batch = [prompts[i] for i in group]
            got = self.lm.score_many(
                [p.ids for p in batch], [ids[i] for i in group], cache=self.cache(batch)
            )
            for i, scores in zip(group, got, strict=True):
                out[i] = scores
        return out, lengths


def _as_lines(text: str, hunk: Hunk) -> tuple[str, ...]:
    """``text`` as the lines that replace ``hunk``: ending with a line end when the hunk's sides
    do (what the model wrote is scored and applied as these lines)."""
    c = hunk.conflict
    last = [side[-1] for side in (c.ours, c.theirs) if side]
    if text and not text.endswith(("\n", "\r")) and last and last[0].endswith("\n"):
        text += "\r\n" if last[0].endswith("\r\n") else "\n"
    return tuple(split_lines(text))


def _context(
    hunk: Hunk, cache: dict[int, tuple[list[Conflict], list[tuple[str, str]]]]
) -> tuple[str, str]:
    """The merged file's text before and after ``hunk`` (the whole file when the hunk knows it,
    else its context lines); ``cache`` keeps each file's conflicts and contexts."""
    f = hunk.file
    if f is not None:
        if id(f) not in cache:
            conflicts = [c for c in f.chunks if not isinstance(c, Stable)]
            cache[id(f)] = (conflicts, conflict_contexts(f.chunks))  # type: ignore[assignment]
        conflicts, contexts = cache[id(f)]
        for same in (lambda c: c is hunk.conflict, lambda c: c == hunk.conflict):
            for i, c in enumerate(conflicts):
                if same(c):
                    return contexts[i]
    return "".join(hunk.before), "".join(hunk.after)


def dedup_written(
    existing: Sequence[tuple[str, ...]], written: Sequence[tuple[tuple[str, ...], float]]
) -> list[tuple[str, ...]]:
    """The written texts no existing candidate has (whitespace ignored), each once."""
    seen = {text_key("".join(t)) for t in existing}
    out = []
    for lines, _ in written:
        key = text_key("".join(lines))
        if key not in seen:
            seen.add(key)
            out.append(lines)
    return out
