"""Hover on a conflict: what each side changed against the base, token by token, and the top-3
candidates with their confidences, in Markdown.

A candidate's confidence is the resolver's estimate that this candidate is right, made for each
candidate on its own (calibrated separately), not a share of one distribution over the
candidates: the column can add up to more than 1, and the hover says so instead of calling it a
probability."""

from __future__ import annotations

from lsprotocol import types
from splice.lsp.analysis import Analysis, ConflictView
from splice.resolver.structured_stage import STRUCTURED

#: Token edits listed per side, and token conflicts listed, at most.
MAX_EDITS = 8
#: Characters of a token run shown.
MAX_CHARS = 60
#: Under the candidate table: what the confidence column means.
CONFIDENCE_NOTE = (
    "*Confidence: the resolver's estimate that this candidate is right, made for each candidate"
    " on its own, so the column need not add up to 1.*"
)
#: Instead of the candidate table while the resolver has not answered yet.
PENDING = "**Candidates**: still being computed (hover again in a moment)."


def code(text: str) -> str:
    """``text`` as a one-line Markdown code span (line breaks shown as ``↵``, long runs cut)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "↵")
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1] + "…"
    if not text:
        return "*nothing*"
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or text.strip() != text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def side_edits(base: tuple[str, ...], side: tuple[str, ...]) -> list[str]:
    """One Markdown item per token edit turning ``base`` into ``side``."""
    from splice.resolver.seqdiff import opcodes

    out = []
    for op in opcodes(base, side):
        old, new = "".join(base[op.a1 : op.a2]), "".join(side[op.b1 : op.b2])
        if op.tag == "replace":
            out.append(f"replaced {code(old)} with {code(new)}")
        elif op.tag == "delete":
            out.append(f"deleted {code(old)}")
        elif op.tag == "insert":
            out.append(f"inserted {code(new)}")
    return out


def token_view(view: ConflictView, lang: str | None) -> list[str]:
    """Markdown lines: each side's token edits, then how the token-level merge ends."""
    from splice.resolver.chunks import Conflict
    from splice.resolver.tokenmerge import hunk_tokens, merge_hunk

    if view.base is None:
        return ["*No base in the markers (merge style): no token view. Use diff3 markers.*"]
    where = " (from git's index)" if view.base_from_index else ""
    lines = [f"**Token changes against the base{where}**", ""]
    tokens = hunk_tokens(view.conflict, lang)
    for name, side in (("ours", tokens.ours), ("theirs", tokens.theirs)):
        changes = side_edits(tokens.base, side)
        shown = "; ".join(changes[:MAX_EDITS]) or "no change"
        more = f" (and {len(changes) - MAX_EDITS} more)" if len(changes) > MAX_EDITS else ""
        lines.append(f"- *{name}*: {shown}{more}")
    clashes = [c for c in merge_hunk(view.conflict, lang) if isinstance(c, Conflict)]
    lines.append("")
    if not clashes:
        lines.append("Token-level merge: **clean** (the sides changed different tokens).")
    else:
        n = len(clashes)
        lines.append(f"Token-level merge: **{n} token conflict{'s' * (n != 1)}**")
        for c in clashes[:MAX_EDITS]:
            base, ours, theirs = ("".join(u) for u in (c.base, c.ours, c.theirs))
            lines.append(f"- base {code(base)} → ours {code(ours)} / theirs {code(theirs)}")
    return lines


def candidate_table(view: ConflictView, pending: bool = False) -> list[str]:
    """The top candidates with their confidences (and what a confidence means)."""
    if not view.candidates:
        return [PENDING if pending else "**Candidates**: none (the resolver abstained)."]
    lines = ["**Candidates**", "", "| # | resolution | confidence | first line |"]
    lines.append("|---|---|---|---|")
    for rank, c in enumerate(view.candidates, 1):
        first = next((ln for ln in c.lines if ln.strip()), "")
        mark = " ✓" if c is view.confident else ""
        cell = code(first.strip()).replace("|", "\\|")
        lines.append(f"| {rank} | {c.name}{mark} | {c.confidence:.2f} | {cell} |")
    return [*lines, "", CONFIDENCE_NOTE]


def markdown(analysis: Analysis, view: ConflictView, pending: bool = False) -> str:
    """The hover's text; ``pending``: the resolver has not answered yet."""
    n = len(analysis.conflicts)
    style = view.marked.style
    head = f"### Splice: conflict {view.index + 1} of {n} ({style} markers)"
    body = [head, "", *token_view(view, analysis.lang), "", *candidate_table(view, pending)]
    structured = [c.explanation for c in view.candidates if c.name == STRUCTURED]
    body += [f"Merged structurally: {why}" for why in structured]
    body += ["", f"Confidence threshold: {view.threshold:.2f}"]
    return "\n".join(body)


def hover(analysis: Analysis, line: int, pending: bool = False) -> types.Hover | None:
    """The hover of the conflict holding ``line`` (None outside conflicts)."""
    view = analysis.at(line)
    if view is None:
        return None
    text = markdown(analysis, view, pending)
    content = types.MarkupContent(kind=types.MarkupKind.Markdown, value=text)
    return types.Hover(contents=content, range=view.range)
