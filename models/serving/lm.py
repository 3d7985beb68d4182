"""The code language model served with onnxruntime: scoring, beam search, bits per byte.

A model folder (from :mod:`splice.models.training.lm_export`) holds ``model.onnx`` (the graph
with the key/value cache as inputs and outputs, int8 weights), ``lm.json`` (:class:`LMSpec`) and
``tokenizer.json`` (:class:`~splice.models.serving.prompt.LMTokenizer`). Nothing here imports
torch or transformers: numpy, onnxruntime and tokenizers only.

:class:`KVCache` is the one place that holds the keys and values of the tokens read so far and
extends them: every model call goes through :meth:`CodeLM.forward`, which feeds a cache and
returns the extended one. Besides the keys and values it keeps, per row, which cached positions
may be attended (padding), the position the next token takes, and the logits of that next
token, so a compressed cache (fewer entries than positions, :meth:`KVCache.compressed`) fits
the same loop.

- :meth:`CodeLM.prefill` reads a prompt once;
- :meth:`CodeLM.score` gives the log-probability of each candidate middle (its tokens and the
  end token) after the prompt: the prompt's cache is copied to a batch of candidates (right
  padded, masked), one run per :data:`MAX_BATCH` candidates; :meth:`CodeLM.score_many` does the
  same for several prompts (a file's hunks), read in one left-padded batch;
- :meth:`CodeLM.generate` is a beam search that stops at the end token or a length cap;
- :meth:`CodeLM.text_loss` / :meth:`CodeLM.bits_per_byte` score a whole text in windows of the
  model's positions, each window after the first starting ``stride`` tokens after the previous
  one, so every scored token sees at least ``window - stride`` tokens of context.

``SPLICE_LM_DIR`` overrides the default folder (``models/shipped/lm``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from splice.models.merging.cache import Budget, CacheMethod, compress_layer
from splice.models.merging.cache.base import resolve_method
from splice.models.serving.prompt import DEFAULT_BUDGET, LMTokenizer, SpecialIds, infill_prompt
from splice.models.serving.sessions import open_session

MODEL_FILE = "model.onnx"
#: The float32 graph kept beside the int8 one (parity tests, benchmarks).
FP32_FILE = "model.fp32.onnx"
SPEC_FILE = "lm.json"
TOKENIZER_FILE = "tokenizer.json"
#: Version of the ``lm.json`` layout.
LM_FORMAT = 1
#: Environment variable naming the model folder (else :func:`default_lm_dir`).
LM_DIR_ENV = "SPLICE_LM_DIR"
#: Candidates scored per onnxruntime run at most (the prompt's cache is copied to each).
MAX_BATCH = 16
#: Longest error message (it stays one line).
MESSAGE_CHARS = 300


def key_name(layer: int) -> str:
    return f"past_key_values.{layer}.key"


def value_name(layer: int) -> str:
    return f"past_key_values.{layer}.value"


def present_name(layer: int, kind: str) -> str:
    return f"present.{layer}.{kind}"


def query_name(layer: int) -> str:
    """The output with layer ``layer``'s rotated queries (graphs exported since they have it)."""
    return f"query.{layer}"


class LMUnavailable(RuntimeError):
    """The model folder is missing, incomplete or cannot be loaded (a one-line message)."""


def default_lm_dir() -> Path:
    """``$SPLICE_LM_DIR`` if set, else ``lm`` in the ``shipped`` folder beside this package."""
    env = os.environ.get(LM_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "shipped" / "lm"


@dataclass(frozen=True)
class LMSpec:
    """What ``lm.json`` holds: the cache geometry and the token ids serving needs."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_positions: int
    #: The fill-in-the-middle and end tokens (None: the model has none, only text scoring).
    special: SpecialIds | None
    #: The token read before a text (a document boundary) in :meth:`CodeLM.text_loss`.
    start_id: int | None
    budget: int = DEFAULT_BUDGET
    quantized: bool = False
    model_type: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LMSpec:
        if data.get("format") != LM_FORMAT:
            raise ValueError(f"lm.json format {data.get('format')!r}, expected {LM_FORMAT}")
        sizes = {k: int(data[k]) for k in ("layers", "kv_heads", "head_dim", "vocab_size")}
        sizes["max_positions"] = int(data["max_positions"])
        if min(sizes.values()) <= 0:
            raise ValueError(f"lm.json sizes must be positive: {sizes}")
        special = data.get("special")
        if special is not None:
            special = SpecialIds(**{k: int(v) for k, v in special.items()})
            if max(vars(special).values()) >= sizes["vocab_size"]:
                raise ValueError("lm.json special ids outside the vocabulary")
        start = data.get("start_id")
        return cls(
            **sizes,
            special=special,
            start_id=None if start is None else int(start),
            budget=int(data.get("budget", DEFAULT_BUDGET)),
            quantized=bool(data.get("quantized", False)),
            model_type=str(data.get("model_type", "")),
        )


@dataclass(frozen=True)
class KVCache:
    """Keys and values of the tokens read so far, per layer (batch, kv_heads, length, head_dim)
    float32; ``mask`` (batch, length) says which entries may be attended; ``next_position``
    (batch,) the position of each row's next token; ``last_logits`` (batch, vocab) the logits of
    that next token (None before any token)."""

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    mask: np.ndarray
    next_position: np.ndarray
    last_logits: np.ndarray | None = None

    @classmethod
    def empty(cls, spec: LMSpec, batch: int = 1) -> KVCache:
        shape = (batch, spec.kv_heads, 0, spec.head_dim)
        blank = tuple(np.zeros(shape, dtype=np.float32) for _ in range(spec.layers))
        return cls(
            keys=blank,
            values=blank,
            mask=np.zeros((batch, 0), dtype=np.int64),
            next_position=np.zeros(batch, dtype=np.int64),
        )

    @classmethod
    def stacked(cls, caches: Sequence[KVCache]) -> KVCache:
        """One batch of the rows of ``caches`` (each read to its end), left padded to the
        longest: padding is masked and takes no position."""
        if not caches or any(c.last_logits is None for c in caches):
            raise ValueError("stacked takes caches that have read something")
        width = max(c.length for c in caches)

        def pad(x: np.ndarray, length: int) -> np.ndarray:
            # (batch, kv_heads, length, d) -> (batch, kv_heads, width, d), zeros on the left
            return np.pad(x, [(0, 0), (0, 0), (width - length, 0), (0, 0)])

        layers = range(len(caches[0].keys))
        return cls(
            keys=tuple(np.concatenate([pad(c.keys[i], c.length) for c in caches]) for i in layers),
            values=tuple(
                np.concatenate([pad(c.values[i], c.length) for c in caches]) for i in layers
            ),
            mask=np.concatenate([np.pad(c.mask, [(0, 0), (width - c.length, 0)]) for c in caches]),
            next_position=np.concatenate([c.next_position for c in caches]),
            last_logits=np.concatenate([c.last_logits for c in caches]),  # type: ignore[misc]
        )

    @property
    def batch(self) -> int:
        return self.mask.shape[0]

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def feeds(self, ids: np.ndarray, step_mask: np.ndarray) -> dict[str, np.ndarray]:
        """The model's inputs to read ``ids`` (batch, n) after this cache; positions count only
        the attended tokens, so padding takes no position."""
        feeds = {
            "input_ids": ids,
            "attention_mask": np.concatenate([self.mask, step_mask], axis=1),
            "position_ids": np.maximum(
                self.next_position[:, None] + np.cumsum(step_mask, axis=1) - 1, 0
            ),
        }
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            feeds[key_name(i)] = k
            feeds[value_name(i)] = v
        return feeds

    def extended(
        self, presents: Sequence[np.ndarray], step_mask: np.ndarray, logits: np.ndarray
    ) -> KVCache:
        """This cache after reading a step: the model's ``presents`` (key, value per layer),
        the step's mask and its ``logits`` (batch, n, vocab)."""
        attended = step_mask.any(axis=1)
        last = step_mask.shape[1] - 1 - np.argmax(step_mask[:, ::-1], axis=1)
        step_last = logits[np.arange(len(last)), last]
        if self.last_logits is None:
            last_logits = step_last
        else:
            last_logits = np.where(attended[:, None], step_last, self.last_logits)
        return KVCache(
            keys=tuple(presents[0::2]),
            values=tuple(presents[1::2]),
            mask=np.concatenate([self.mask, step_mask], axis=1),
            next_position=self.next_position + step_mask.sum(axis=1),
            last_logits=last_logits,
        )

    def compressed(
        self,
        method: str | CacheMethod,
        budget: Budget | int,
        queries: Sequence[np.ndarray | None] | None = None,
    ) -> KVCache:
        """This cache (batch 1) with each layer's attended entries compressed to ``budget``
        (a :class:`~splice.models.merging.cache.Budget` or a number of entries) by ``method``
        (a registered name or an instance, :mod:`splice.models.merging.cache`): fewer entries,
        all attended, the same ``next_position`` and ``last_logits``.

        Methods that read queries (``h2o``, ``snapkv``, ``cam``, ``ems``; ``kvmerger``'s
        attention-protected variant) need ``queries[i]`` (1, q_heads, w, head_dim) for layer
        ``i``: the RoPE-rotated queries of the last ``w`` attended tokens (the graph's
        ``query.{i}`` outputs, :meth:`CodeLM._read_compressed`); ``streaming_llm`` and
        ``random`` work from the keys alone, ``kvmerger`` too (its key-only variant)."""
        if self.batch != 1:
            raise ValueError(f"compressed takes a cache of one row, not {self.batch}")
        if queries is not None and len(queries) != len(self.keys):
            raise ValueError(f"{len(queries)} query arrays for {len(self.keys)} layers")
        attended = np.flatnonzero(self.mask[0])
        keys, values = [], []
        for layer, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            out = compress_layer(
                k[:, :, attended],
                v[:, :, attended],
                method,
                budget,
                queries=None if queries is None else queries[layer],
                layer=layer,
            )
            keys.append(np.ascontiguousarray(out.keys[None]))
            values.append(np.ascontiguousarray(out.values[None]))
        return KVCache(
            keys=tuple(keys),
            values=tuple(values),
            mask=np.ones((1, keys[0].shape[2]), dtype=np.int64),
            next_position=self.next_position.copy(),
            last_logits=self.last_logits,
        )

    def select(self, rows: Sequence[int] | np.ndarray) -> KVCache:
        """The cache of ``rows`` (repeated or reordered: beams, one copy per candidate)."""
        rows = np.asarray(rows, dtype=np.int64)
        return KVCache(
            keys=tuple(k[rows] for k in self.keys),
            values=tuple(v[rows] for v in self.values),
            mask=self.mask[rows],
            next_position=self.next_position[rows],
            last_logits=None if self.last_logits is None else self.last_logits[rows],
        )


@dataclass(frozen=True)
class GenerateOptions:
    """A beam search: ``beams`` hypotheses, at most ``max_new_tokens``, ending at a token of
    ``stop`` (None: the end token)."""

    beams: int = 4
    max_new_tokens: int = 64
    stop: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.beams < 1 or self.max_new_tokens < 1:
            raise ValueError("beams and max_new_tokens must be at least 1")


@dataclass(frozen=True)
class Generation:
    """A generated sequence (without its stop token) and its log-probability (natural log,
    the stop token included when ``finished``)."""

    ids: tuple[int, ...]
    log_prob: float
    finished: bool


@dataclass(frozen=True)
class TextLoss:
    """A text's cross-entropy under the model: ``bits`` over its ``tokens`` and ``bytes``."""

    tokens: int
    bytes: int
    bits: float

    @property
    def bits_per_byte(self) -> float:
        return self.bits / self.bytes if self.bytes else 0.0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis (float32 in, float32 out)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


class CodeLM:
    """The language model of a folder, served with onnxruntime (module doc)."""

    def __init__(self, model_dir: str | Path | None = None, *, model_file: str = MODEL_FILE):
        self.model_dir = Path(model_dir) if model_dir is not None else default_lm_dir()
        files = (model_file, SPEC_FILE, TOKENIZER_FILE)
        if not self.model_dir.is_dir():
            raise LMUnavailable(f"{self.model_dir}: no such model folder")
        missing = [f for f in files if not (self.model_dir / f).is_file()]
        if missing:
            hint = ""
            if (self.model_dir / "config.json").is_file():
                hint = " (a Hugging Face model: export it with `splice export-lm`)"
            raise LMUnavailable(f"{self.model_dir}: missing {', '.join(missing)}{hint}")
        try:
            data = json.loads((self.model_dir / SPEC_FILE).read_text(encoding="utf-8"))
            self.spec = LMSpec.from_json(data)
            self.tokenizer = LMTokenizer.from_file(self.model_dir / TOKENIZER_FILE)
            self.session = open_session(self.model_dir / model_file)
        except Exception as exc:  # any load failure means the same to callers
            raise LMUnavailable(
                _one_line(f"{self.model_dir}: {type(exc).__name__}: {exc}")
            ) from exc
        want = ["input_ids", "attention_mask", "position_ids"]
        want += [n for i in range(self.spec.layers) for n in (key_name(i), value_name(i))]
        got = [i.name for i in self.session.get_inputs()]
        if got != want:
            raise LMUnavailable(
                _one_line(
                    f"{self.model_dir}: the graph's inputs {got[:5]}... are not {want[:5]}..."
                )
            )
        self.outputs = ["logits"] + [
            present_name(i, k) for i in range(self.spec.layers) for k in ("key", "value")
        ]
        queries = [query_name(i) for i in range(self.spec.layers)]
        names = {o.name for o in self.session.get_outputs()}
        #: The outputs with each layer's queries (None: a graph exported without them).
        self.query_outputs = queries if names.issuperset(queries) else None

    # ------------------------------------------------------------------ model calls

    def forward(
        self, cache: KVCache, ids: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, KVCache]:
        """Read ``ids`` (batch, n) after ``cache`` (``mask``: 0 at padding); the logits
        (batch, n, vocab) and the extended cache."""
        logits, cache, _ = self._run(cache, ids, mask, with_queries=False)
        return logits, cache

    def _run(
        self, cache: KVCache, ids: np.ndarray, mask: np.ndarray | None, *, with_queries: bool
    ) -> tuple[np.ndarray, KVCache, list[np.ndarray] | None]:
        """:meth:`forward`, and with ``with_queries`` each layer's queries of the step
        (batch, heads, n, head_dim), when the graph has them."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        mask = np.ones_like(ids) if mask is None else np.asarray(mask, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[0] != cache.batch or mask.shape != ids.shape:
            raise ValueError(f"ids {ids.shape} and mask {mask.shape} do not fit the cache")
        if ids.size and not 0 <= int(ids.min()) <= int(ids.max()) < self.spec.vocab_size:
            raise ValueError(f"token ids outside the vocabulary of {self.spec.vocab_size}")
        end = int((cache.next_position + mask.sum(axis=1)).max(initial=0))
        if end > self.spec.max_positions:
            raise ValueError(f"{end} tokens: more than the model's {self.spec.max_positions}")
        wanted = self.query_outputs if with_queries and self.query_outputs else []
        logits, *rest = self.session.run(self.outputs + wanted, cache.feeds(ids, mask))
        presents, queries = rest[: len(rest) - len(wanted)], rest[len(rest) - len(wanted) :]
        return logits, cache.extended(presents, mask, logits), queries if wanted else None

    def reads_queries(self, method: str | CacheMethod) -> bool:
        """Whether ``method`` can run here: it reads keys only, or the graph gives queries."""
        return resolve_method(method).query_use != "required" or self.query_outputs is not None

    def prefill(self, ids: Sequence[int]) -> KVCache:
        """The cache (batch 1) after reading ``ids``."""
        if not len(ids):
            raise ValueError("an empty prompt")
        _, cache = self.forward(KVCache.empty(self.spec), np.asarray([ids], dtype=np.int64))
        return cache

    @property
    def special(self) -> SpecialIds:
        """The fill-in-the-middle and end tokens (LMUnavailable when the model has none)."""
        if self.spec.special is None:
            raise LMUnavailable(f"{self.model_dir}: the model has no fill-in-the-middle tokens")
        return self.spec.special

    # ------------------------------------------------------------------ scoring

    def prefill_many(self, prompts: Sequence[Sequence[int]]) -> KVCache:
        """The cache of several prompts in one batch, left padded (row i: ``prompts[i]``)."""
        if not prompts or not all(len(p) for p in prompts):
            raise ValueError("an empty prompt")
        width = max(len(p) for p in prompts)
        ids = np.zeros((len(prompts), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = p
            mask[row, width - len(p) :] = 1
        _, cache = self.forward(KVCache.empty(self.spec, batch=len(prompts)), ids, mask)
        return cache

    def score(
        self,
        prompt_ids: Sequence[int],
        candidates: Sequence[Sequence[int]],
        *,
        cache: KVCache | None = None,
    ) -> np.ndarray:
        """Log-probability (natural log, float64) of each candidate's tokens followed by the
        end token, as what comes after ``prompt_ids`` (or after ``cache``, its prefill). The
        prompt is read once (:meth:`score_many`)."""
        if cache is not None and cache.batch != 1:
            raise ValueError("score takes the cache of one prompt")
        return self.score_many([prompt_ids], [candidates], cache=cache)[0]

    def score_many(
        self,
        prompts: Sequence[Sequence[int]],
        candidates: Sequence[Sequence[Sequence[int]]],
        *,
        cache: KVCache | None = None,
    ) -> list[np.ndarray]:
        """:meth:`score` for several prompts (the hunks of a file) with ``candidates[i]`` after
        ``prompts[i]``: the prompts are read in one batch (or ``cache`` is their
        :meth:`prefill_many`), then the candidates of all prompts go through in batches of
        :data:`MAX_BATCH`, shortest first, each row the cache of its prompt, right padded."""
        if len(candidates) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(candidates)} candidate lists")
        end = self.special.end
        pairs = [(p, [*c, end]) for p, cands in enumerate(candidates) for c in cands]
        scores = np.zeros(len(pairs), dtype=np.float64)
        if pairs:
            prefix = cache if cache is not None else self.prefill_many(prompts)
            if prefix.batch != len(prompts):
                raise ValueError(f"a cache of {prefix.batch} rows for {len(prompts)} prompts")
            first = log_softmax(prefix.last_logits)
            order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
            for start in range(0, len(order), MAX_BATCH):
                self._score_rows(
                    prefix, first, [(i, *pairs[i]) for i in order[start:][:MAX_BATCH]], scores
                )
        out, at = [], 0
        for cands in candidates:
            out.append(scores[at : at + len(cands)])
            at += len(cands)
        return out

    def _score_rows(
        self,
        prefix: KVCache,
        first: np.ndarray,
        rows: Sequence[tuple[int, int, list[int]]],
        scores: np.ndarray,
    ) -> None:
        """Add to ``scores[i]`` the log-probability of ``seq`` after prompt ``p`` for each
        (i, p, seq) of ``rows`` (one model run; ``first``: the prompts' next-token
        log-probabilities)."""
        end = self.special.end
        for i, p, seq in rows:
            scores[i] = float(first[p, seq[0]])
        width = max(len(seq) for _, _, seq in rows) - 1
        if width == 0:
            return
        ids = np.full((len(rows), width), end, dtype=np.int64)
        mask = np.zeros_like(ids)
        for r, (_, _, seq) in enumerate(rows):
            ids[r, : len(seq) - 1] = seq[:-1]
            mask[r, : len(seq) - 1] = 1
        logits, _ = self.forward(prefix.select([p for _, p, _ in rows]), ids, mask)
        logp = log_softmax(logits)
        for r, (i, _, seq) in enumerate(rows):
            n = len(seq) - 1
            scores[i] += float(logp[r, np.arange(n), seq[1:]].astype(np.float64).sum())

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompt_ids: Sequence[int],
        options: GenerateOptions | None = None,
        *,
        cache: KVCache | None = None,
    ) -> list[Generation]:
        """Beam search after ``prompt_ids``: the best ``beams`` sequences, finished ones (ended
        by a stop token) first, each group by log-probability. A hypothesis that ends is set
        aside; the search stops when ``beams`` have ended and no live one scores higher (log-
        probabilities only fall), at ``max_new_tokens`` or at the model's last position. With
        one beam this is greedy decoding."""
        options = options or GenerateOptions()
        stop = set(options.stop if options.stop is not None else (self.special.end,))
        width = options.beams
        if cache is None:
            cache = self.prefill(prompt_ids)
        elif cache.batch != 1:
            raise ValueError("generate takes the cache of one prompt (its prefill)")
        live: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
        done: list[Generation] = []
        for step in range(options.max_new_tokens):
            logp = log_softmax(cache.last_logits).astype(np.float64)
            totals = np.array([s for _, s in live])[:, None] + logp
            flat = totals.ravel()
            top = np.argpartition(-flat, min(2 * width, flat.size - 1))[: 2 * width]
            top = top[np.lexsort((top, -flat[top]))]
            grown: list[tuple[tuple[int, ...], float]] = []
            rows: list[int] = []
            for rank, index in enumerate(top):
                row, token = divmod(int(index), logp.shape[1])
                seq, total = live[row][0], float(flat[index])
                if token in stop:
                    if rank < width:
                        done.append(Generation(seq, total, True))
                    continue
                grown.append(((*seq, token), total))
                rows.append(row)
                if len(grown) == width:
                    break
            done = sorted(done, key=lambda g: -g.log_prob)[:width]
            live = grown
            if not live or (len(done) == width and live[0][1] <= done[-1].log_prob):
                break
            if step + 1 == options.max_new_tokens:
                break
            if int(cache.next_position.max()) + 1 > self.spec.max_positions:
                break
            tokens = np.array([[seq[-1]] for seq, _ in live], dtype=np.int64)
            _, cache = self.forward(cache.select(rows), tokens)
        unfinished = [Generation(seq, total, False) for seq, total in live]
        return (done + sorted(unfinished, key=lambda g: -g.log_prob))[:width]

    def infill(self, prefix: str, suffix: str, options: GenerateOptions | None = None) -> str:
        """The model's middle between ``prefix`` and ``suffix`` (the best beam's text)."""
        options = options or GenerateOptions()
        budget = min(self.spec.budget, self.spec.max_positions - options.max_new_tokens)
        if budget < 4:
            raise ValueError(f"max_new_tokens {options.max_new_tokens} leaves no room for a prompt")
        _ = self.special  # LMUnavailable when the model has no fill-in-the-middle tokens
        prompt = infill_prompt(self.tokenizer, prefix, suffix, budget)
        best = self.generate(prompt, options)
        return self.tokenizer.decode(best[0].ids) if best else ""

    # ------------------------------------------------------------------ whole texts

    def text_loss(self, text: str, stride: int | None = None) -> TextLoss:
        """The cross-entropy of ``text`` read after the start token (module doc): every token of
        the text is scored, in windows of the model's positions moved by ``stride`` (default
        half a window)."""
        ids = self.tokenizer.encode(text)
        seq = ([self.spec.start_id] if self.spec.start_id is not None else []) + ids
        window = self.spec.max_positions
        stride = stride or max(window // 2, 1)
        if not 0 < stride <= window - 1:
            raise ValueError(f"stride {stride} must be between 1 and {window - 1}")
        nats, scored, begin = 0.0, 1, 0
        while scored < len(seq):
            stop = min(begin + window, len(seq))
            if stop > scored:
                chunk = np.asarray([seq[begin:stop]], dtype=np.int64)
                logits, _ = self.forward(KVCache.empty(self.spec), chunk)
                logp = log_softmax(logits[0, scored - 1 - begin : stop - 1 - begin])
                targets = np.asarray(seq[scored:stop])
                nats -= float(logp[np.arange(len(targets)), targets].astype(np.float64).sum())
                scored = stop
            begin += stride
        return TextLoss(
            tokens=max(len(seq) - 1, 0), bytes=len(text.encode("utf-8")), bits=nats / math.log(2)
        )

    def _read_compressed(
        self, seq: Sequence[int], method: str | CacheMethod, budget: int, chunk: int
    ) -> Iterator[tuple[int, np.ndarray, KVCache, list[np.ndarray] | None]]:
        """Read ``seq`` in chunks of ``chunk`` tokens through one cache, compressed by ``method``
        to ``budget`` entries before a chunk that would take it over: (start, logits, cache,
        queries) after each chunk. A method that weighs entries by attention reads the queries
        of the chunk before (the last ``chunk`` entries: kvpress's observation window), when the
        graph gives them. Memory stays at most ``budget + chunk`` entries; positions stay
        true."""
        if budget < 1 or chunk < 1:
            raise ValueError(f"budget {budget} and chunk {chunk} must be at least 1")
        method = self._cache_method(method)
        wants = method.query_use != "never"
        cache, queries = KVCache.empty(self.spec), None
        for start in range(0, len(seq), chunk):
            part = seq[start : start + chunk]
            if cache.length and cache.length + len(part) > budget:
                cache = cache.compressed(method, budget, queries)
            ids = np.asarray([part], dtype=np.int64)
            logits, cache, queries = self._run(cache, ids, None, with_queries=wants)
            yield start, logits, cache, queries

    def _cache_method(self, method: str | CacheMethod) -> CacheMethod:
        """``method`` resolved; a ValueError when it needs queries this graph does not give."""
        method = resolve_method(method)
        if not self.reads_queries(method):
            raise ValueError(
                f"cache method {method.name!r} needs queries, and {self.model_dir} was exported "
                "without them (export it again with `splice export-lm`)"
            )
        return method

    def prefill_compressed(
        self,
        ids: Sequence[int],
        method: str | CacheMethod,
        budget: int,
        *,
        tail: int = 0,
        chunk: int = 64,
    ) -> KVCache:
        """The cache (batch 1) after reading ``ids``: all but the last ``tail`` tokens through a
        cache held at ``budget`` entries (:meth:`_read_compressed`), then the tail, uncompressed
        (the part a prompt needs whole: the conflict and the fill-in-the-middle token)."""
        if not len(ids) or not 0 <= tail <= len(ids):
            raise ValueError(f"an empty prompt or a tail of {tail} of {len(ids)} tokens")
        head, rest = list(ids[: len(ids) - tail]), list(ids[len(ids) - tail :])
        method = self._cache_method(method)
        cache, queries = KVCache.empty(self.spec), None
        for _, _, read, read_queries in self._read_compressed(head, method, budget, chunk):
            cache, queries = read, read_queries
        if rest:
            if cache.length > budget:
                cache = cache.compressed(method, budget, queries)
            _, cache = self.forward(cache, np.asarray([rest], dtype=np.int64))
        return cache

    def compressed_loss(
        self, text: str, method: str | CacheMethod, budget: Budget | int, chunk: int = 64
    ) -> TextLoss:
        """The cross-entropy of ``text`` read through one cache held at ``budget`` entries
        (:meth:`_read_compressed`). The text is cut at the model's positions (the tokens counted
        say how many were scored). Methods that need queries run when the graph gives them
        (exported since ``query.{i}`` outputs exist); else only ``streaming_llm``, ``random``
        and ``kvmerger`` (key-only)."""
        if isinstance(budget, Budget):
            budget = budget.size(self.spec.max_positions)
        ids = self.tokenizer.encode(text)
        seq = ([self.spec.start_id] if self.spec.start_id is not None else []) + ids
        seq = seq[: self.spec.max_positions]
        nats = 0.0
        for start, logits, _, _ in self._read_compressed(seq[:-1], method, budget, chunk):
            targets = seq[start + 1 : start + 1 + logits.shape[1]]
            logp = log_softmax(logits[0, : len(targets)])
            nats -= float(logp[np.arange(len(targets)), targets].astype(np.float64).sum())
        scored = max(len(seq) - 1, 0)
        cut = len(seq) < len(ids) + (self.spec.start_id is not None)
        n_bytes = len((self.tokenizer.decode(ids[:scored]) if cut else text).encode("utf-8"))
        return TextLoss(tokens=scored, bytes=n_bytes, bits=nats / math.log(2))

    def bits_per_byte(self, text: str, stride: int | None = None) -> float:
        """Bits per UTF-8 byte of ``text`` (:meth:`text_loss`)."""
        return self.text_loss(text, stride).bits_per_byte
