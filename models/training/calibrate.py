"""Calibrate the classifier on validation repositories: temperature, ECE, confidence threshold.

Input: the ONNX model and an example set of the validation repositories (``runs/val.npz`` from
:mod:`splice.models.training.examples`). numpy and onnxruntime only.

- Temperature scaling: ``T`` minimises the mean negative log-likelihood of "one of the valid
  patterns" (``-log sum_valid softmax(z / T)``, the training loss) over the pieces; a log-spaced
  grid, then golden-section refinement of ``log T``.
- Expected calibration error (15 equal-width bins of the top probability; a piece counts as right
  when its top pattern is valid), before (T = 1) and after.
- Threshold: a hunk's confidence is the product over its pieces (of the route it was labelled
  with) of the probability of the piece's top pattern, counting the valid patterns together when
  the top one is valid (they give the same tokens, and the resolver merges equal outputs); it is
  right when every piece's top pattern is valid. The threshold is the lowest confidence at which
  the hunks at or above it are at least ``target`` precise; coverage is their share of the
  labelled hunks.

Approximations, stated in the output: the example set holds only hunks that some pattern choice
reproduces (inexpressible hunks, wrong whatever the model says, are missing: precision on all
hunks is lower), and each hunk has only the route it was labelled with, so the resolver's mixture
of both routes is not what is measured here (``splice eval --resolver model`` measures that).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_BINS = 15
TARGET_PRECISION = 0.95
#: Temperatures searched (log-spaced) before refinement.
T_GRID = np.geomspace(0.05, 20.0, 121)
BATCH = 256


@dataclass
class CalibrationReport:
    """What ``calibration.json`` holds (the resolver reads the first four fields)."""

    temperature: float
    threshold: float
    token_weight: float
    max_len: int
    target_precision: float
    precision_at_threshold: float
    coverage: float
    hunks_at_threshold: int
    n_hunks: int
    n_pieces: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    accuracy: float
    source: str
    notes: str = (
        "threshold measured on labelled (expressible) validation hunks, each with its labelled "
        "route only; see splice.models.training.calibrate"
    )


def nll(logits: np.ndarray, valid: np.ndarray, temperature: float) -> float:
    """Mean ``-log`` of the softmax mass on the valid patterns at ``temperature``."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(z).sum(axis=1))
    log_valid = np.log(np.where(valid, np.exp(z), 0.0).sum(axis=1) + 1e-300)
    return float(np.mean(log_total - log_valid))


def fit_temperature(logits: np.ndarray, valid: np.ndarray, iters: int = 40) -> float:
    """The temperature minimising :func:`nll` (grid, then golden-section on log T)."""
    losses = [nll(logits, valid, t) for t in T_GRID]
    i = int(np.argmin(losses))
    lo = math.log(T_GRID[max(i - 1, 0)])
    hi = math.log(T_GRID[min(i + 1, len(T_GRID) - 1)])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, valid, math.exp(a)), nll(logits, valid, math.exp(b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, valid, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, valid, math.exp(b))
    return math.exp((lo + hi) / 2)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error over ``n_bins`` equal-width confidence bins."""
    if len(confidence) == 0:
        return 0.0
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for k in range(n_bins):
        mine = bins == k
        if mine.any():
            total += mine.sum() * abs(correct[mine].mean() - confidence[mine].mean())
    return float(total / len(confidence))


def piece_scores(probs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per piece: confidence of its answer (module doc) and whether the answer is right."""
    top = probs.argmax(axis=1)
    right = valid[np.arange(len(top)), top]
    conf = np.where(right, np.where(valid, probs, 0.0).sum(axis=1), probs.max(axis=1))
    return conf, right


def hunk_scores(
    conf: np.ndarray, right: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per hunk (pieces grouped by ``keys``): product of confidences, all pieces right."""
    _, inverse = np.unique(keys, return_inverse=True)
    n = int(inverse.max()) + 1 if len(inverse) else 0
    log_conf = np.zeros(n)
    np.add.at(log_conf, inverse, np.log(np.maximum(conf, 1e-300)))
    wrong = np.zeros(n, dtype=int)
    np.add.at(wrong, inverse, (~right).astype(int))
    return np.exp(log_conf), wrong == 0


def select_threshold(
    conf: np.ndarray, right: np.ndarray, target: float = TARGET_PRECISION
) -> tuple[float, float, float, int]:
    """(threshold, precision, coverage, hunks answered): the lowest confidence whose hunks at or
    above it are at least ``target`` precise; (1.0, 0, 0, 0) when no threshold reaches it."""
    if len(conf) == 0:
        return 1.0, 0.0, 0.0, 0
    order = np.argsort(-conf, kind="stable")
    c, r = conf[order], right[order].astype(float)
    precision = np.cumsum(r) / np.arange(1, len(c) + 1)
    # only cut between distinct confidences: all hunks with equal confidence go together
    last_of_value = np.r_[c[1:] != c[:-1], True]
    ok = np.flatnonzero(last_of_value & (precision >= target))
    if len(ok) == 0:
        return 1.0, 0.0, 0.0, 0
    i = int(ok[-1])
    return float(c[i]), float(precision[i]), (i + 1) / len(c), i + 1


def onnx_logits(model_path: str | Path, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Logits of every example of ``arrays`` from the ONNX model, in batches of :data:`BATCH`."""
    from splice.models.serving.sessions import open_session

    session = open_session(model_path)
    fixed = session.get_inputs()[0].shape[2]
    out = []
    n = len(arrays["labels"])
    for start in range(0, n, BATCH):
        sl = slice(start, start + BATCH)
        feeds = {k: arrays[k][sl].astype(np.int64) for k in ("input_ids", "edit_ids")}
        feeds["attention_mask"] = arrays["attention_mask"][sl].astype(np.int64)
        if not isinstance(fixed, int):
            attended = np.flatnonzero(feeds["attention_mask"].any(axis=(0, 1)))
            length = int(attended[-1]) + 1 if len(attended) else 1
            feeds = {k: np.ascontiguousarray(v[..., :length]) for k, v in feeds.items()}
        out.append(session.run(["logits"], feeds)[0].astype(np.float64))
    return np.concatenate(out) if out else np.zeros((0, 10))


def calibrate_logits(
    logits: np.ndarray,
    labels: np.ndarray,
    hunk_keys: np.ndarray,
    *,
    target: float = TARGET_PRECISION,
    token_weight: float = 0.5,
    max_len: int = 128,
    source: str = "",
    temperature: float | None = None,
) -> CalibrationReport:
    """Fit the temperature (or take ``temperature`` as given) and pick the threshold from
    validation logits (module doc)."""
    valid = labels.astype(bool)
    keep = valid.any(axis=1)
    logits, valid, hunk_keys = logits[keep], valid[keep], hunk_keys[keep]
    if len(logits) == 0:
        raise ValueError("no labelled examples to calibrate on")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature {temperature} must be positive")
    t = fit_temperature(logits, valid) if temperature is None else float(temperature)
    before, after = softmax(logits), softmax(logits, t)
    conf0, right = piece_scores(before, valid)
    conf1, _ = piece_scores(after, valid)
    top0, top1 = before.max(axis=1), after.max(axis=1)
    hunk_conf, hunk_right = hunk_scores(conf1, right, hunk_keys)
    thr, prec, cov, n_at = select_threshold(hunk_conf, hunk_right, target)
    return CalibrationReport(
        temperature=t,
        threshold=thr,
        token_weight=token_weight,
        max_len=max_len,
        target_precision=target,
        precision_at_threshold=prec,
        coverage=cov,
        hunks_at_threshold=n_at,
        n_hunks=len(hunk_conf),
        n_pieces=len(logits),
        nll_before=nll(logits, valid, 1.0),
        nll_after=nll(logits, valid, t),
        ece_before=ece(top0, right),
        ece_after=ece(top1, right),
        accuracy=float(right.mean()),
        source=source,
    )


def load_npz(path: str | Path, max_examples: int | None = None) -> dict[str, np.ndarray]:
    """The arrays calibration needs (the first ``max_examples`` examples, whole hunks)."""
    with np.load(path, allow_pickle=False) as data:
        names = ("input_ids", "edit_ids", "attention_mask", "labels", "hunk_key")
        arrays = {k: data[k] for k in names}
        arrays["meta"] = data["meta"] if "meta" in data.files else np.array("{}")
    if max_examples is not None and max_examples < len(arrays["labels"]):
        keys = arrays["hunk_key"]
        end = max_examples
        while end < len(keys) and keys[end] == keys[end - 1]:
            end += 1  # never split a hunk's pieces
        arrays = {k: (v if k == "meta" else v[:end]) for k, v in arrays.items()}
    return arrays


def calibrate(
    model_dir: str | Path,
    val_npz: str | Path,
    *,
    out_path: str | Path | None = None,
    target: float = TARGET_PRECISION,
    token_weight: float = 0.5,
    max_examples: int | None = None,
    temperature: float | None = None,
    max_len: int | None = None,
) -> CalibrationReport:
    """Calibrate ``model_dir/model.onnx`` on ``val_npz``; write ``calibration.json``
    (``temperature``: use it instead of fitting one; ``max_len``: the sequence length to write
    for inference, else the example set's).

    The pieces are scored at the example set's length whatever ``max_len`` says."""
    arrays = load_npz(val_npz, max_examples)
    meta: dict[str, Any] = json.loads(str(arrays["meta"]) or "{}")
    if max_len is None:
        max_len = int(meta.get("max_len", arrays["input_ids"].shape[2]))
    logits = onnx_logits(Path(model_dir) / "model.onnx", arrays)
    report = calibrate_logits(
        logits,
        arrays["labels"],
        arrays["hunk_key"],
        target=target,
        token_weight=token_weight,
        max_len=max_len,
        source=str(val_npz),
        temperature=temperature,
    )
    target_path = Path(out_path) if out_path else Path(model_dir) / "calibration.json"
    target_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report
