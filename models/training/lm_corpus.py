"""Training sequences for the code language model, streamed from the merge shards.

Two kinds of fixed-length sequences (formats: :mod:`splice.models.serving.prompt`):

- **Code.** The human-merged file of every record (exact duplicates dropped by a content hash),
  cut at line ends into pieces of about one sequence, each piece either a fill-in-the-middle
  example (:func:`~splice.models.serving.prompt.fim_ids`: a random middle span at character
  level, prefix-suffix-middle or suffix-prefix-middle) or plain text followed by the end token;
  the token stream is packed and cut into sequences of ``seq_len``. Loss on every token.
- **Resolution.** Every conflict hunk of a record whose human resolution is located
  (:func:`~splice.data.evaluation.locate_resolutions`) becomes one
  :func:`~splice.models.serving.prompt.resolution_ids` sequence: the merged file around the hunk
  as the line merge leaves it (stable lines, other conflicts as ours, the way
  :func:`~splice.resolver.pipeline.find_hunks` builds a hunk's context), the conflict, and the
  resolved lines; padded to ``seq_len``, loss only on the resolved lines and the end token.

A :class:`CorpusOptions` ``resolution_share`` of the sequences are resolution examples (when
the stream has them). Everything is deterministic given the seed, and memory stays bounded:
records are read one at a time (round-robin over repositories), only content hashes are kept.
Data-parallel ranks take disjoint records (record ``i`` goes to rank ``i % world``).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from splice.models.serving.prompt import LMTokenizer, conflict_contexts, fim_ids, resolution_ids

#: Label of a position that takes no loss (the convention of transformers' losses).
IGNORE = -100
DEFAULT_DATA = "../shared/data/merges"
DEFAULT_TOKENIZER = "models/shipped/tokenizer.json"
#: Characters of code per piece, per token of sequence length (code averages ~3.5 per token).
CHARS_PER_SEQ_TOKEN = 3
#: Resolution examples waiting while code sequences are drawn (the rest are dropped).
MAX_PENDING = 256


@dataclass(frozen=True)
class CorpusOptions:
    """What :func:`iter_sequences` builds."""

    data_dir: str = DEFAULT_DATA
    tokenizer: str = DEFAULT_TOKENIZER
    split: str = "train"
    seq_len: int = 512
    #: Share of code pieces made fill-in-the-middle examples, and of those, the share in
    #: suffix-prefix-middle order.
    fim_rate: float = 0.5
    spm_rate: float = 0.5
    #: Share of sequences that are resolution examples (0: code only; 1: resolutions only).
    resolution_share: float = 0.2
    #: Resolved lines longer than this share of ``seq_len`` (in tokens) are skipped.
    max_middle_share: float = 0.5
    langs: tuple[str, ...] | None = None
    #: Larger merged files are skipped for code (resolution examples still use them).
    max_file_chars: int = 200_000
    seed: int = 0
    #: Data-parallel shard: this rank of ``world`` takes records ``rank, rank + world, ...``.
    rank: int = 0
    world: int = 1
    #: Read the records again (with fresh random choices) when they run out.
    repeat: bool = False

    def __post_init__(self) -> None:
        if self.seq_len < 32:
            raise ValueError(f"seq_len {self.seq_len} is too short (at least 32)")
        for name in ("fim_rate", "spm_rate", "resolution_share", "max_middle_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is not between 0 and 1")
        if self.split not in ("train", "val"):
            raise ValueError(f"split {self.split!r} is not train or val")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world - 1}")


@dataclass(frozen=True)
class LMSequence:
    """One training sequence: ``ids`` and ``labels`` (``IGNORE`` where no loss), both
    ``seq_len`` long; ``kind`` is ``"code"`` or ``"resolution"``."""

    ids: list[int]
    labels: list[int]
    kind: str


def pieces(text: str, size: int) -> list[str]:
    """``text`` cut at line ends into pieces of at most ``size`` characters (a longer line is
    cut where it passes)."""
    out: list[str] = []
    current: list[str] = []
    length = 0
    for line in text.splitlines(keepends=True):
        while len(line) > size:
            if current:
                out.append("".join(current))
                current, length = [], 0
            out.append(line[:size])
            line = line[size:]
        if length + len(line) > size and current:
            out.append("".join(current))
            current, length = [], 0
        current.append(line)
        length += len(line)
    if current:
        out.append("".join(current))
    return out


def code_ids(
    tok: LMTokenizer, piece: str, rng: random.Random, fim_rate: float, spm_rate: float
) -> list[int]:
    """One piece of code as a fill-in-the-middle example (at ``fim_rate``) or as plain text,
    ending with the end token."""
    if len(piece) >= 2 and rng.random() < fim_rate:
        a, b = sorted(rng.randrange(len(piece) + 1) for _ in range(2))
        spm = rng.random() < spm_rate
        return fim_ids(tok, piece[:a], piece[a:b], piece[b:], spm=spm)
    return [*tok.encode(piece), tok.special.end]


def resolution_examples(
    tok: LMTokenizer, record: dict, seq_len: int, max_middle_share: float = 0.5
) -> list[tuple[list[int], int]]:
    """The resolution sequences of one record's located hunks: ``(ids, middle start)``, each at
    most ``seq_len`` tokens (the file around the conflict cut to fit)."""
    from splice.resolver.chunks import split_lines
    from splice.resolver.pipeline import find_hunks

    from splice.data.evaluation import locate_resolutions

    b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
    chunks, reports = find_hunks(b, o, t, record.get("lang"), record.get("path"))
    if not reports:
        return []
    truths = locate_resolutions(chunks, split_lines(record["merged"]))
    out = []
    for report, truth, (before, after) in zip(
        reports, truths, conflict_contexts(chunks), strict=True
    ):
        if truth is None:
            continue
        resolved = "".join(truth)
        n_middle = len(tok.encode(resolved)) + 1
        if n_middle > seq_len * max_middle_share:
            continue
        c = report.hunk.conflict
        ids, start = resolution_ids(
            tok,
            before,
            after,
            "".join(c.ours),
            "".join(c.base),
            "".join(c.theirs),
            resolved,
            budget=seq_len - n_middle,
        )
        out.append((ids, start))
    return out


def _content_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def iter_sequences(options: CorpusOptions) -> Iterator[LMSequence]:
    """Training sequences of ``options.split`` (module doc), endless with ``repeat``."""
    from splice.data.dataset import iter_records

    tok = LMTokenizer.from_file(options.tokenizer)
    L = options.seq_len
    end = tok.special.end
    langs = list(options.langs) if options.langs else None
    epoch = 0
    while True:
        rng = random.Random(f"{options.seed}:{options.rank}:{epoch}")
        seen: set[bytes] = set()
        stream: list[int] = []
        pending: deque[tuple[list[int], int]] = deque()
        records = iter_records(options.data_dir, split=options.split, langs=langs)
        want_resolution = options.resolution_share > 0
        want_code = options.resolution_share < 1
        exhausted = False
        index = -1
        while True:
            take_resolution = want_resolution and (
                not want_code or rng.random() < options.resolution_share
            )
            # read records until the chosen kind has a sequence ready (or none are left)
            while not exhausted and not (pending if take_resolution else len(stream) >= L):
                record = next(records, None)
                if record is None:
                    exhausted = True
                    break
                index += 1
                if index % options.world != options.rank:
                    continue
                if want_code:
                    merged = record["merged"]
                    key = _content_key(merged)
                    if key not in seen and len(merged) <= options.max_file_chars:
                        seen.add(key)
                        for piece in pieces(merged, L * CHARS_PER_SEQ_TOKEN):
                            stream.extend(
                                code_ids(tok, piece, rng, options.fim_rate, options.spm_rate)
                            )
                if want_resolution:
                    for example in resolution_examples(tok, record, L, options.max_middle_share):
                        if len(pending) < MAX_PENDING:
                            pending.append(example)
            if take_resolution and pending:
                ids, start = pending.popleft()
                pad = L - len(ids)
                labels = [IGNORE] * start + ids[start:] + [IGNORE] * pad
                yield LMSequence([*ids, *[end] * pad], labels, "resolution")
            elif len(stream) >= L:
                ids = stream[:L]
                del stream[:L]
                yield LMSequence(ids, list(ids), "code")
            elif exhausted:
                if pending and want_resolution:
                    continue  # drain what is left of the chosen kinds
                break
        if not options.repeat:
            return
        epoch += 1


def build_sequences(options: CorpusOptions, n: int) -> list[LMSequence]:
    """The first ``n`` sequences of :func:`iter_sequences` (e.g. the fixed validation set)."""
    out: list[LMSequence] = []
    for seq in iter_sequences(options):
        out.append(seq)
        if len(out) >= n:
            break
    return out


def measure(options: CorpusOptions, n: int) -> dict[str, float]:
    """Seconds and counts for building ``n`` sequences (for the docs)."""
    started = time.perf_counter()
    seqs = build_sequences(options, n)
    seconds = time.perf_counter() - started
    kinds = [s.kind for s in seqs]
    return {
        "sequences": len(seqs),
        "resolution": kinds.count("resolution"),
        "seconds": seconds,
        "sequences_per_second": len(seqs) / max(seconds, 1e-9),
    }


if __name__ == "__main__":  # python -m splice.models.training.lm_corpus [N] [split]
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    split = sys.argv[2] if len(sys.argv) > 2 else "train"
    print(measure(CorpusOptions(split=split, data_dir=str(Path(DEFAULT_DATA))), n))
