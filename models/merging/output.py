"""The output folder of a merge: never an input, written whole or not at all.

:func:`staged_output` checks the output path against every input model (paths resolved,
symbolic links included): an output that is, contains or lies inside an input is refused, since
writing it would overwrite the model being read. The merge writes into a fresh folder next to
the output (same file system, an unpredictable name made with ``mkdir``), which is moved into
place only once everything is written: when a merge fails, nothing at the output changes.

Every merge leaves a manifest, ``splice-merge.json``, listing the files it wrote. A later merge
into the same folder replaces those files and removes the ones it does not write again (stale
shards, an index the new model does not need); every other file in the folder is kept. A
non-empty folder without a manifest is refused unless ``force``: then the files a merge could
have written (weights, indexes, config and tokenizer files) are removed as well. Each file is
moved in with ``os.replace``, which replaces a link instead of writing through it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: The list of files a merge wrote, in the output folder.
MANIFEST = "splice-merge.json"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
#: Files a merge may write besides the weights (removed by ``force`` in a folder without manifest).
METADATA_FILES = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    *TOKENIZER_FILES,
)
#: Weight files of any name (removed by ``force``): a stale one could be loaded instead.
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")


class OutputError(ValueError):
    """An output folder the merge refuses to write; the message says why and what to do."""


def _overlap(out: Path, model: Path) -> str | None:
    """How ``out`` (resolved) collides with the input ``model`` (resolved), or None."""
    if out == model:
        return "is"
    if model in out.parents:
        return "is inside"
    if out in model.parents:
        return "contains"
    try:
        if out.exists() and os.path.samefile(out, model):
            return "is"
    except OSError:
        pass
    return None


def check_output(out_dir: str | Path, inputs: Iterable[tuple[str, Path]], force: bool) -> Path:
    """The resolved output folder, after checking it against ``inputs`` (``(role, path)``:
    ``("model", path)``, ``("base model", path)``, ...); an :class:`OutputError` otherwise."""
    raw = Path(out_dir).expanduser()
    if raw.is_symlink() and not raw.exists():
        raise OutputError(f"output {out_dir}: a symbolic link to nothing; give a folder")
    target = raw.resolve()
    if target.exists() and not target.is_dir():
        raise OutputError(f"output {out_dir}: exists and is not a folder")
    if not target.parent.is_dir():
        what = "is not a folder" if target.parent.exists() else "does not exist; create it first"
        raise OutputError(f"output {out_dir}: the folder {target.parent} {what}")
    for role, path in inputs:
        how = _overlap(target, Path(path).expanduser().resolve())
        if how is not None:
            raise OutputError(
                f"output {out_dir} {how} the {role} {path}: writing it would destroy that "
                "model; choose another output folder"
            )
    foreign = target.is_dir() and any(target.iterdir()) and previous_files(target) is None
    if foreign and not force:
        raise OutputError(
            f"output {out_dir}: a non-empty folder that no Splice merge wrote (no {MANIFEST}); "
            "choose a new or empty folder, or pass --force to replace its model files"
        )
    return target


def previous_files(folder: Path) -> set[str] | None:
    """The files the manifest of ``folder`` lists (plain names only), or None without one."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        return None
    return {f for f in files if isinstance(f, str) and _plain_name(f)}


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def _model_files(folder: Path) -> set[str]:
    """Files in ``folder`` that a merge could have written (for ``force``)."""
    names = {p.name for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)}
    return names | {n for n in METADATA_FILES if os.path.lexists(folder / n)}


def _make_stage(target: Path) -> Path:
    """A new empty folder next to ``target`` with an unpredictable name."""
    stem = target.name[:80]
    for _ in range(16):
        stage = target.parent / f".{stem}.splice-{secrets.token_hex(6)}.tmp"
        try:
            stage.mkdir(mode=0o777)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(
                f"cannot create a folder in {target.parent}: {exc.strerror}"
            ) from None
        return stage
    raise OutputError(f"cannot create a temporary folder in {target.parent}")


def publish(stage: Path, target: Path, force: bool = False) -> None:
    """Move the files of ``stage`` into ``target`` (see the module's docstring); ``stage`` is
    gone afterwards."""
    files = sorted(p.name for p in stage.iterdir() if p.name != MANIFEST)
    manifest = {"written_by": "splice merge", "version": 1, "files": files}
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
        try:
            os.rename(stage, target)  # replaces an empty folder atomically
            return
        except OSError:
            if not target.is_dir():
                raise
    old = previous_files(target) or set()
    if force:
        old |= _model_files(target)
    for name in [*files, MANIFEST]:
        dest = target / name
        if dest.is_dir() and not dest.is_symlink():
            raise OutputError(f"output {target}: {name} is a folder; remove it first")
    for name in files:
        os.replace(stage / name, target / name)
    for name in sorted(old - set(files) - {MANIFEST}):
        dest = target / name
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
    os.replace(stage / MANIFEST, target / MANIFEST)
    stage.rmdir()


@contextmanager
def staged_output(
    out_dir: str | Path, inputs: Iterable[tuple[str, Path]], force: bool = False
) -> Iterator[Path]:
    """A fresh folder to write the merge into; moved to ``out_dir`` when the block succeeds,
    removed when it raises. ``inputs`` and ``force``: see :func:`check_output`."""
    target = check_output(out_dir, inputs, force)
    stage = _make_stage(target)
    try:
        yield stage
        publish(stage, target, force)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
