"""Calibration text for the merges that run the model: data-aware weights, experts and layers.

A :class:`Calibration` is texts plus a token budget and a chunk length. :func:`load_texts` reads
them from a text file, a folder of text files, a merge-data shard (``.jsonl.xz``: each record's
human-merged file, ``merged``) or a list of strings; :func:`calibration_chunks` tokenizes them
into equal chunks; :func:`load_causal_lm` opens a local Hugging Face causal LM and its tokenizer
(never the hub).
"""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

#: Default calibration budget (tokens per model).
DEFAULT_TOKENS = 4096
#: Default chunk length (clipped to the model's ``max_position_embeddings``).
DEFAULT_SEQ_LEN = 512
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".json", ".jsonl", ".yaml", ".yml", ".c", ".js"}
#: The merge-data field read from a shard's records.
SHARD_FIELD = "merged"


@dataclass
class Calibration:
    """Where the statistics come from: texts, a token budget and the chunk length."""

    texts: list[str]
    tokens: int = DEFAULT_TOKENS
    seq_len: int = DEFAULT_SEQ_LEN

    def digest(self) -> str:
        """A hash of the texts and budget (part of the cache key)."""
        h = hashlib.sha256(f"{self.tokens}:{self.seq_len}:{len(self.texts)}".encode())
        for text in self.texts:
            h.update(hashlib.sha256(text.encode("utf-8", "replace")).digest())
        return h.hexdigest()


def _shard_texts(path: Path) -> list[str]:
    texts = []
    with lzma.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                text = json.loads(line).get(SHARD_FIELD)
            except (json.JSONDecodeError, AttributeError):
                problem = f"calibration: {path} line {number} is not a JSON record"
                raise ValueError(problem) from None
            if isinstance(text, str) and text:
                texts.append(text)
    return texts


def load_texts(source: str | Path | Sequence[str]) -> list[str]:
    """The calibration texts: a file, a ``.jsonl.xz`` merge shard (its merged files, in order), a
    folder (its text files, sorted, recursively) or a list of strings (the texts themselves)."""
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if path.is_file() and path.name.endswith(".jsonl.xz"):
            texts = _shard_texts(path)
            if not texts:
                raise ValueError(f"calibration: no merged files in {path}")
            return texts
        if path.is_file():
            return [path.read_text(encoding="utf-8", errors="replace")]
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
            )
            texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
            if not texts:
                raise ValueError(f"calibration: no text files in {path}")
            return texts
        raise ValueError(f"calibration: {source} is neither a file nor a folder")
    texts = [str(t) for t in source]
    if not texts:
        raise ValueError("calibration: no texts")
    return texts


def calibration_chunks(tokenizer: Any, calib: Calibration, max_len: int | None) -> torch.Tensor:
    """The token ids to run, ``(chunks, seq_len)``: the texts' tokens (each followed by EOS),
    the first ``calib.tokens`` of them, cut into equal chunks (a short tail is dropped)."""
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for text in calib.texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            ids.append(int(eos))
        if len(ids) >= calib.tokens:
            break
    ids = ids[: calib.tokens]
    if len(ids) < 2:
        raise ValueError("calibration: fewer than 2 tokens of text")
    seq = min(calib.seq_len, max_len or calib.seq_len, len(ids))
    usable = len(ids) // seq * seq
    return torch.tensor(ids[:usable], dtype=torch.long).reshape(-1, seq)  # (chunks, seq)


def load_causal_lm(model_dir: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, Any]:
    """The causal LM in ``model_dir`` (float32, eval mode, on ``device``) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True
    )
    return model.to(device).eval(), tokenizer


def model_chunks(model: torch.nn.Module, tokenizer: Any, calib: Calibration) -> torch.Tensor:
    """:func:`calibration_chunks` clipped to the model's context length."""
    max_len = getattr(model.config, "max_position_embeddings", None)
    return calibration_chunks(tokenizer, calib, max_len)


def run_chunks(model: torch.nn.Module, chunks: torch.Tensor) -> None:
    """Run ``model`` over each chunk (one sequence at a time, no gradients): for hooks that
    collect statistics."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for row in chunks:
            model(input_ids=row.unsqueeze(0).to(device))
