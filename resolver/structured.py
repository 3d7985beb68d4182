"""Structured merge of one conflict hunk: unordered members (imports, class members, enum
constants, entries, fields, annotations) merged as sets on the tree-sitter syntax tree.

The method, for a hunk of a language in :data:`splice.resolver.commutative.TABLE`:

1. **Locate.** With a :class:`FileContext`, the hunk is the k-th conflict of its diff3 chunks
   (the chunk that *is* the hunk's conflict, else the first equal one), and its first line in
   base, ours and theirs comes from the line merge's own records of that conflict (checked
   against the three slices). The three whole files are parsed once per FileContext (a weak
   cache), so a file with ten hunks is parsed three times. Without a FileContext, or when the
   hunk is not found there, each revision is ``before + side + after``.
2. **Parent.** In each revision whose region holds text, the commutative parents around it
   are the ancestors of the smallest node covering the text that the language's table names
   (starting above a node that is exactly the region's text, so a whole member finds its
   parent, not itself). The parents all these revisions share (same type and owner's name) are
   tried innermost first, at most ``MAX_LEVELS``. A revision whose region is blank (a pure
   insertion point) takes the innermost node of that type and owner among the ancestors of the
   text just before and just after the point. A parent with a parse error is not used.
3. **Members.** A member's span is the member node (less trailing whitespace: a YAML block
   node holds its last newline) plus the comments (and, in TypeScript class
   bodies, decorators) right before it, its ``,``/``;`` and a comment on the same line after it.
   The region must be a run of whole members with only whitespace between them and comments after
   the last one. A member that straddles the region's edge extends the region in all three
   revisions by the same lines, which must be identical there (they are the hunk's context); the
   merged text must then start and end with those lines, which are cut off again.
4. **Merge as sets by key** (:func:`splice.resolver.commutative.member_key`): changed on one side
   only -> that side; the same change on both (whitespace aside) -> once; deleted by one side and
   unchanged by the other -> deleted; added by one side -> kept; added by both with the same text
   -> once. A real conflict abstains: both changed one member differently, one deleted what the
   other changed, the same key added differently, duplicate keys in one revision, a Java/C#
   overload set changed by both sides with a deletion, a member one side *replaced* (deleted
   where it added others, in the diff of the key sequences) that the other side deleted, an
   addition whose two neighbours the other side both deleted, an added member whose key is
   also elsewhere in the parent, and a deleted import whose names the rest of the file still
   uses (:attr:`FileContext.rest_names`) without another import bringing them.
5. **Order.** Base order, or the one side's order when only that side reordered the common
   members (both reordered differently: abstain). Each side's additions follow their nearest
   predecessor that is in the result (for a predecessor the other side replaced: its
   replacement). When both sides add after the same member and the entry is ``sorted`` and each
   side's run (that member, its additions, the next member; outside the region when needed) is
   sorted by :func:`~splice.resolver.commutative.sort_key` (case-sensitively, else ignoring
   case), the additions are interleaved in sorted order; otherwise ours' come first, then
   theirs'.
6. **Render.** Every member keeps its original text (from the side whose version is used). The
   text between two members is the gap the inputs had between those two (ours first, then theirs,
   then base); for a pair no input has, the gap before the later member in its own revision (or
   after the earlier one). The text before the first and after the last member is merged three
   way (whitespace-only differences: ours'). In comma-separated parents every member but the last
   gets a comma, and the last one follows ours' last member (a bare trailing ``,`` is dropped or
   added). Line endings follow ours' file when it uses ``\\r\\n`` throughout.
7. **Check.** Ours' file with the region replaced must not have more parse errors than the
   cleanest input (:class:`splice.resolver.syntax.SyntaxCheck`).

Limits: files over ``max_bytes`` and hunks past ``max_seconds`` (checked between steps) abstain.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING

from splice.resolver.chunks import Conflict, split_lines, text_key
from splice.resolver.commutative import (
    COMMENTS,
    TABLE,
    TAILS,
    Commutative,
    entries_for,
    imported_names,
    member_key,
    owner_label,
    owner_name,
    short_name,
    sort_key,
)
from splice.resolver.languages import thread_parser

if TYPE_CHECKING:
    from collections.abc import Sequence

    from splice.resolver.filecontext import FileContext
    from splice.resolver.resolvers import Hunk
    from splice.resolver.syntax import SyntaxCheck
    from tree_sitter import Node, Tree

#: Extending the region to whole members is retried at most this many times.
MAX_EXTENSIONS = 8
#: Parents tried, innermost first, when an inner one does not merge.
MAX_LEVELS = 3
#: Index of each revision in the lists of sides.
_OURS, _THEIRS, _BASE = 0, 1, 2


@dataclass(frozen=True)
class StructuredMerge:
    """A hunk resolved on the syntax tree."""

    #: The hunk's resolution (replaces the conflict region), line endings kept.
    lines: tuple[str, ...]
    #: The commutative parent in words (``class Foo``, ``the imports``, ``enum Color``).
    parent: str
    #: What was done, for people.
    explanation: str
    #: Members added by ours, by theirs.
    added: tuple[int, int]
    #: Members removed by ours, by theirs.
    removed: tuple[int, int]
    #: The commutative parent's node type (its table entry's ``parent``), for calibration.
    kind: str = ""


class _Abstain(Exception):
    """The structured merge does not answer this hunk."""


class _TimeUp(_Abstain):
    """The hunk's time limit is spent."""


@dataclass
class _Revision:
    """One version of the file: its lines, bytes, byte offset of each line start, and tree."""

    lines: Sequence[str]
    data: bytes
    starts: list[int]
    tree: Tree
    crlf: bool

    def line_of(self, offset: int) -> int:
        """The index of the line holding byte ``offset``."""
        return bisect.bisect_right(self.starts, offset) - 1

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8", "surrogatepass")


@dataclass
class _Member:
    """One member of a parent in one revision."""

    key: str
    order: str  # what a sorted run is sorted by
    start: int  # its span (comments and tail included)
    end: int
    body_end: int  # the end of the member node itself (where a missing comma goes)
    comma: bool
    text: str
    norm: str
    side: int
    #: The names an import brings in (None: not an import, or unknown).
    names: tuple[str, ...] | None = None


@dataclass
class _Side:
    """The hunk region in one revision and the parent's members there."""

    rev: _Revision
    first: int  # region lines [first, last)
    last: int
    parent: Node | None = None
    members: list[_Member] = field(default_factory=list)
    unclaimed: list[Node] = field(default_factory=list)

    @property
    def span(self) -> tuple[int, int]:
        return self.rev.starts[self.first], self.rev.starts[self.last]

    def inside(self) -> list[_Member]:
        s, e = self.span
        return [m for m in self.members if s <= m.start and m.end <= e]


# --------------------------------------------------------------------------- parsing and cache

_FILES: weakref.WeakKeyDictionary[FileContext, dict[str, _FileCache]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


@dataclass
class _FileCache:
    """The three parsed revisions of a file, the line merge's conflict positions, the syntax
    check's baseline."""

    revisions: tuple[_Revision, _Revision, _Revision]
    positions: list[tuple[int, int, int]] | None
    check: SyntaxCheck


def _revision(lines: Sequence[str], lang: str) -> _Revision:
    encoded = [line.encode("utf-8", "surrogatepass") for line in lines]
    starts = list(accumulate((len(e) for e in encoded), initial=0))
    data = b"".join(encoded)
    ended = [line for line in lines if line.endswith("\n")]
    crlf = bool(ended) and all(line.endswith("\r\n") for line in ended)
    return _Revision(lines, data, starts, thread_parser(lang).parse(data), crlf)


def _conflict_positions(fc: FileContext) -> list[tuple[int, int, int]] | None:
    """First line in (base, ours, theirs) of each diff3 conflict of the file, in order."""
    from splice.resolver.linemerge import _combine

    x1, x2 = fc.scripts
    base, ours, theirs = fc.base, fc.ours, fc.theirs
    merged = _combine(x1, x2, len(base), len(ours), len(theirs), ours, theirs)
    found = [(m.i0, m.i1, m.i2) for m in merged if m.mode == 0]
    n = sum(1 for c in fc.chunks if isinstance(c, Conflict))
    return found if len(found) == n else None


def _file_cache(fc: FileContext, lang: str) -> _FileCache:
    from splice.resolver.syntax import SyntaxCheck

    with _CACHE_LOCK:
        per_lang = _FILES.setdefault(fc, {})
        if lang not in per_lang:
            revs = (_revision(fc.ours, lang), _revision(fc.theirs, lang), _revision(fc.base, lang))
            texts = ("".join(fc.base), "".join(fc.ours), "".join(fc.theirs))
            per_lang[lang] = _FileCache(
                revs, _conflict_positions(fc), SyntaxCheck(*texts, lang=lang)
            )
        return per_lang[lang]


def _sides(hunk: Hunk, lang: str, max_bytes: int) -> tuple[list[_Side], SyntaxCheck]:
    """The region in (ours, theirs, base), from the FileContext when it places the hunk."""
    from splice.resolver.syntax import SyntaxCheck

    c = hunk.conflict
    slices = (c.ours, c.theirs, c.base)
    fc = hunk.file
    if fc is not None:
        if max(sum(len(x) for x in v) for v in (fc.base, fc.ours, fc.theirs)) > max_bytes:
            raise _Abstain("file too large")
        conflicts = [x for x in fc.chunks if isinstance(x, Conflict)]
        k = next((i for i, x in enumerate(conflicts) if x is c), None)
        if k is None:
            k = next((i for i, x in enumerate(conflicts) if x == c), None)
        cache = _file_cache(fc, lang) if k is not None else None
        if cache is not None and cache.positions is not None:
            b0, o0, t0 = cache.positions[k]
            sides = [
                _Side(rev, start, start + len(lines))
                for rev, start, lines in zip(cache.revisions, (o0, t0, b0), slices, strict=True)
            ]
            if all(
                tuple(s.rev.lines[s.first : s.last]) == tuple(lines)
                for s, lines in zip(sides, slices, strict=True)
            ):
                return sides, cache.check
    files = [[*hunk.before, *lines, *hunk.after] for lines in slices]
    if max(sum(len(x) for x in f) for f in files) > max_bytes:
        raise _Abstain("file too large")
    n0 = len(hunk.before)
    sides = [_Side(_revision(f, lang), n0, n0 + len(x)) for f, x in zip(files, slices, strict=True)]
    texts = ("".join(files[_BASE]), "".join(files[_OURS]), "".join(files[_THEIRS]))
    return sides, SyntaxCheck(*texts, lang=lang)


# --------------------------------------------------------------------------- the parent


def _content(side: _Side) -> tuple[int, int] | None:
    """Byte range of the region's text without its leading and trailing whitespace."""
    s, e = side.span
    seg = side.rev.data[s:e]
    stripped = seg.lstrip()
    if not stripped:
        return None
    lead = len(seg) - len(stripped)
    return s + lead, s + lead + len(stripped.rstrip())


def _ancestors(node: Node | None) -> list[Node]:
    out = []
    while node is not None:
        out.append(node)
        node = node.parent
    return out


def _identity(node: Node) -> tuple[str, str]:
    return node.type, owner_name(node)


def _chain(lang: str, side: _Side, rng: tuple[int, int]) -> list[Node]:
    """The commutative parents around the region's text, innermost first (starting above a
    node that is exactly the text: a whole member is looked up in its parent)."""
    root = side.rev.tree.root_node
    node = root.descendant_for_byte_range(*rng)
    if node is not None and (node.start_byte, node.end_byte) == rng:
        node = node.parent
    return [n for n in _ancestors(node) if entries_for(lang, n)]


def _parent_at_point(lang: str, side: _Side, want: tuple[str, str]) -> Node:
    """The innermost node of type and owner ``want`` next to a blank region."""
    data = side.rev.data
    s, e = side.span
    before = data[:s].rstrip()
    after_skip = len(data[e:]) - len(data[e:].lstrip())
    root = side.rev.tree.root_node
    cands: list[Node] = []
    if before:
        cands += _ancestors(root.descendant_for_byte_range(len(before) - 1, len(before)))
    if e + after_skip < len(data):
        cands += _ancestors(root.descendant_for_byte_range(e + after_skip, e + after_skip + 1))
    fits = [n for n in cands if _identity(n) == want and entries_for(lang, n)]
    if not fits:
        raise _Abstain("no matching parent at the insertion point")
    return min(fits, key=lambda n: n.end_byte - n.start_byte)


def _parent_levels(lang: str, sides: list[_Side]) -> list[tuple[str, str]]:
    """The parents (type, owner) that every revision with text in the region lies in,
    innermost first."""
    chains = [_chain(lang, s, rng) for s in sides if (rng := _content(s)) is not None]
    if not chains:
        raise _Abstain("blank region")
    levels = [_identity(n) for n in chains[0]]
    common = [x for x in levels if all(x in {_identity(n) for n in c} for c in chains[1:])]
    if not common:
        raise _Abstain("the revisions disagree on the parent" if levels else "no parent")
    return list(dict.fromkeys(common))


def _set_parents(lang: str, sides: list[_Side], want: tuple[str, str]) -> None:
    for side in sides:
        rng = _content(side)
        if rng is None:
            side.parent = _parent_at_point(lang, side, want)
        else:
            side.parent = next(n for n in _chain(lang, side, rng) if _identity(n) == want)
        if side.parent.has_error:
            raise _Abstain("parse error in the parent")


# --------------------------------------------------------------------------- members


def _blank(side: _Side, node: Node) -> bool:
    """Whitespace as a node of its own (XML's CharData): passed over like the text between."""
    return not side.rev.data[node.start_byte : node.end_byte].strip()


def _collect(entry: Commutative, side: _Side, index: int) -> None:
    """The parent's members (spans with their comments and tails) and the children no member
    claims."""
    parent = side.parent
    assert parent is not None
    kids = parent.children
    n = len(kids)
    claimed = [False] * n
    members: list[_Member] = []
    for i, kid in enumerate(kids):
        if not kid.is_named or claimed[i]:
            continue
        key = member_key(entry, kid)
        if key is None:
            continue
        claimed[i] = True
        start = kid.start_byte
        j = i - 1
        while j >= 0 and not claimed[j]:
            if kids[j].type in COMMENTS or kids[j].type in entry.attached:
                start = kids[j].start_byte
                claimed[j] = True
            elif not (kids[j].is_named and _blank(side, kids[j])):
                break
            j -= 1
        # a YAML block node ends after its last line's newline: the member ends before it
        body_end = kid.start_byte + len(side.rev.data[kid.start_byte : kid.end_byte].rstrip())
        end, comma = body_end, False
        row = kid.end_point.row if body_end == kid.end_byte else side.rev.line_of(body_end - 1)
        k = i + 1
        if k < n and not kids[k].is_named and kids[k].type in TAILS:
            end, row, comma = kids[k].end_byte, kids[k].end_point.row, kids[k].type == ","
            claimed[k] = True
            k += 1
        if k < n and kids[k].type in COMMENTS and kids[k].start_point.row == row:
            end = kids[k].end_byte
            claimed[k] = True
        text = side.rev.text(start, end)
        order, names = sort_key(entry, kid), imported_names(kid)
        members.append(
            _Member(key, order, start, end, body_end, comma, text, text_key(text), index, names)
        )
    side.members = members
    side.unclaimed = [kids[i] for i in range(n) if not claimed[i]]


def _extension(side: _Side) -> tuple[int, int]:
    """Lines to add (above, below) so that no member straddles the region's edges."""
    s, e = side.span
    up = down = 0
    for m in side.members:
        if m.start < e and m.end > s and not (s <= m.start and m.end <= e):
            up = max(up, side.first - side.rev.line_of(m.start))
            down = max(down, side.rev.line_of(m.end - 1) + 1 - side.last)
    return up, down


def _extend(entry: Commutative, sides: list[_Side]) -> tuple[int, int]:
    """Grow the region to whole members on all sides alike; (lines above, lines below)."""
    above = below = 0
    for _ in range(MAX_EXTENSIONS):
        for i, side in enumerate(sides):
            _collect(entry, side, i)
        wants = [_extension(s) for s in sides]
        up, down = max(w[0] for w in wants), max(w[1] for w in wants)
        if not up and not down:
            return above, below
        heads = {tuple(s.rev.lines[s.first - up : s.first]) for s in sides}
        tails = {tuple(s.rev.lines[s.last : s.last + down]) for s in sides}
        if any(s.first < up or s.last + down > len(s.rev.lines) for s in sides):
            raise _Abstain("cannot extend the region")
        if len(heads) != 1 or len(tails) != 1:
            raise _Abstain("the extension differs between the revisions")
        for s in sides:
            s.first, s.last = s.first - up, s.last + down
        above, below = above + up, below + down
    raise _Abstain("too many extensions")


def _check_region(side: _Side) -> None:
    """The region is whole members, whitespace between them, comments after the last."""
    s, e = side.span
    parent = side.parent
    assert parent is not None
    rng = _content(side)
    if rng is not None and (rng[0] < parent.start_byte or rng[1] > parent.end_byte):
        raise _Abstain("the region leaves the parent")
    for kid in side.unclaimed:
        if kid.start_byte < e and kid.end_byte > s:
            if _blank(side, kid):
                continue
            if kid.type not in COMMENTS:
                raise _Abstain(f"the region holds a {kid.type!r} that is not a member")
            if kid.start_byte < s or kid.end_byte > e:
                raise _Abstain("a comment crosses the region's edge")
    inside = side.inside()
    if not inside and rng is not None:
        raise _Abstain("text but no member in the region")
    for a, b in zip(inside, inside[1:], strict=False):
        if side.rev.data[a.end : b.start].strip():
            raise _Abstain("text between members")


# --------------------------------------------------------------------------- the set merge


@dataclass
class _Merged:
    chosen: dict[str, _Member]
    order: list[str]
    added: tuple[int, int]
    removed: tuple[int, int]
    sorted_run: bool


def _same(a: _Member, b: _Member) -> bool:
    return a.norm == b.norm


def _status(base: dict[str, _Member], side: dict[str, _Member]) -> dict[str, str]:
    out = {}
    for k in base.keys() | side.keys():
        if k not in side:
            out[k] = "deleted"
        elif k not in base:
            out[k] = "added"
        elif not _same(base[k], side[k]):
            out[k] = "changed"
    return out


def _overloads_clash(b: dict, o: dict, t: dict) -> bool:
    """Both sides changed one overload set and one of them deleted (or re-signed) a member."""
    so, st = _status(b, o), _status(b, t)
    names: dict[str, list[str]] = {}
    for k in so.keys() | st.keys():
        names.setdefault(short_name(k), []).append(k)
    for keys in names.values():
        touched_o = [k for k in keys if k in so]
        touched_t = [k for k in keys if k in st]
        if not touched_o or not touched_t:
            continue
        deleted = any(so.get(k) == "deleted" or st.get(k) == "deleted" for k in keys)
        same = all(
            so.get(k) == st.get(k) and (k not in o or k not in t or _same(o[k], t[k])) for k in keys
        )
        if deleted and not same:
            return True
    return False


def _sorted_by(keys: list[str], fold: bool) -> bool:
    seq = [k.lower() for k in keys] if fold else keys
    return all(x <= y for x, y in zip(seq, seq[1:], strict=False))


def _outer(side: _Side) -> tuple[str | None, str | None]:
    """The sort keys of the parent's members just before and just after the region."""
    s, e = side.span
    before = [m.order for m in side.members if m.end <= s]
    after = [m.order for m in side.members if m.start >= e]
    return (before[-1] if before else None), (after[0] if after else None)


def _names_used(hunk: Hunk) -> frozenset[str]:
    """Names the merged file uses outside its conflicts (outside this hunk, without a
    FileContext)."""
    from splice.resolver.filecontext import names

    if hunk.file is not None:
        return hunk.file.rest_names
    return names([*hunk.before, *hunk.after])


def _check_deleted_imports(base: list[_Member], merged: _Merged, used: frozenset[str]) -> None:
    """A side may delete an import only when the rest of the file no longer uses what it
    brought in (or another kept import still brings it)."""
    provided = {n for k in merged.order for n in (merged.chosen[k].names or ())}
    for m in base:
        if m.key in merged.chosen or not m.names:
            continue
        if any(n in used and n not in provided for n in m.names):
            raise _Abstain(f"a deleted import ({', '.join(m.names)}) is still used")


def _outside(side: _Side) -> set[str]:
    """The keys of the parent's members outside the region."""
    s, e = side.span
    return {m.key for m in side.members if m.end <= s or m.start >= e}


def _replacements(base: list[str], side: list[str]) -> dict[str, list[str]]:
    """Base keys a side deleted where it added others (a replace in the diff of the key
    sequences) -> the keys it put there: an edit of those members rather than a free
    deletion plus addition."""
    from splice.resolver.seqdiff import opcodes

    out: dict[str, list[str]] = {}
    for op in opcodes(base, side):
        if op.tag != "replace":
            continue
        gone = [k for k in base[op.a1 : op.a2] if k not in side]
        new = [k for k in side[op.b1 : op.b2] if k not in base]
        if gone and new:
            for k in gone:
                out[k] = new
    return out


def _merge(
    entry: Commutative,
    base: list[_Member],
    ours: list[_Member],
    theirs: list[_Member],
    outer: tuple[str | None, str | None],
) -> _Merged:
    """The three-way set merge of the region's members and their order (module doc, 4-5);
    ``outer``: the sort keys of ours' members just before and after the region."""
    maps = []
    for members in (base, ours, theirs):
        keyed = {m.key: m for m in members}
        if len(keyed) != len(members):
            raise _Abstain("duplicate keys")
        maps.append(keyed)
    b, o, t = maps
    if entry.key == "signature" and _overloads_clash(b, o, t):
        raise _Abstain("both sides changed an overload set")
    chosen: dict[str, _Member] = {}
    added = [0, 0]
    removed = [0, 0]
    for k in [*b, *(k for k in o if k not in b), *(k for k in t if k not in b and k not in o)]:
        mb, mo, mt = b.get(k), o.get(k), t.get(k)
        if mb and mo and mt:
            if _same(mo, mb) and _same(mt, mb):  # at most whitespace: keep who reformatted
                chosen[k] = mt if mo.text == mb.text else mo
            elif _same(mt, mb) or _same(mo, mt):
                chosen[k] = mo
            elif _same(mo, mb):
                chosen[k] = mt
            else:
                raise _Abstain(f"both sides changed {k!r}")
        elif mb and mo:
            if not _same(mo, mb):
                raise _Abstain(f"theirs deleted {k!r}, which ours changed")
            removed[1] += 1
        elif mb and mt:
            if not _same(mt, mb):
                raise _Abstain(f"ours deleted {k!r}, which theirs changed")
            removed[0] += 1
        elif mb:
            removed[0] += 1
            removed[1] += 1
        elif mo and mt:
            if not _same(mo, mt):
                raise _Abstain(f"both sides added {k!r} differently")
            chosen[k] = mo
            added[0] += 1
            added[1] += 1
        elif mo:
            chosen[k] = mo
            added[0] += 1
        elif mt:
            chosen[k] = mt
            added[1] += 1

    keys_b, keys_o, keys_t = ([m.key for m in x] for x in (base, ours, theirs))
    repl_o, repl_t = _replacements(keys_b, keys_o), _replacements(keys_b, keys_t)
    for mine, other, other_keys in ((repl_o, repl_t, t), (repl_t, repl_o, o)):
        for k, new in mine.items():
            if k not in other_keys and other.get(k) != new:
                raise _Abstain(f"one side replaced {k!r}, the other deleted it")
    for side_keys, other_keys in ((keys_o, t), (keys_t, o)):
        for i, k in enumerate(side_keys):
            if k in b or i == 0 or i == len(side_keys) - 1:
                continue
            before, after = side_keys[i - 1], side_keys[i + 1]
            if all(x in b and x not in other_keys for x in (before, after)):
                raise _Abstain(f"{k!r} is added inside what the other side deleted")

    # the order of the members both sides kept
    kept = [k for k in keys_b if k in chosen]
    kept_set = set(kept)
    o_order = [k for k in keys_o if k in kept_set]
    t_order = [k for k in keys_t if k in kept_set]
    if o_order == kept:
        skeleton = t_order
    elif t_order in (kept, o_order):
        skeleton = o_order
    else:
        raise _Abstain("both sides reordered the members")

    # each side's additions, grouped after their nearest predecessor in the result
    ours_added = {k for k in keys_o if k in chosen and k not in b}
    theirs_added = {k for k in keys_t if k in chosen and k not in b and k not in ours_added}

    def groups(
        keys: list[str], mine: set[str], placed: set[str], repl: dict[str, list[str]]
    ) -> dict[str | None, list[str]]:
        out: dict[str | None, list[str]] = {}
        anchor: str | None = None
        for k in keys:
            if k in mine:
                out.setdefault(anchor, []).append(k)
            elif k in placed:
                anchor = k
            elif k in repl and repl[k][-1] in chosen:  # the other side replaced it
                anchor = repl[k][-1]
        return out

    groups_o = groups(keys_o, ours_added, kept_set, repl_t)
    groups_t = groups(keys_t, theirs_added, kept_set | ours_added, repl_o)

    order: list[str] = []
    sorted_run = False
    next_of: dict[str | None, str | None] = dict(
        zip([None, *skeleton], [*skeleton, None], strict=True)
    )
    sort_of = {m.key: m.order for m in (*base, *theirs, *ours)}

    def emit(at: str | None) -> None:
        nonlocal sorted_run
        go, gt = groups_o.pop(at, []), groups_t.pop(at, [])
        seq = go + gt
        if go and gt and entry.sorted:
            prev = sort_of[at] if at is not None else outer[0]
            following = next_of.get(at)
            nxt = sort_of[following] if following is not None else outer[1]
            head = [prev] if prev is not None else []
            tail = [nxt] if nxt is not None else []
            if head or tail:
                run_o = [*head, *(sort_of[k] for k in go), *tail]
                run_t = [*head, *(sort_of[k] for k in gt), *tail]
                for fold in (False, True):
                    if _sorted_by(run_o, fold) and _sorted_by(run_t, fold):
                        lower = str.lower if fold else str
                        seq = sorted(seq, key=lambda k: lower(sort_of[k]))
                        sorted_run = True
                        break
        for k in seq:
            order.append(k)
            if k in groups_o or k in groups_t:
                emit(k)

    emit(None)
    for k in skeleton:
        order.append(k)
        emit(k)
    if groups_o or groups_t or len(order) != len(chosen):
        raise _Abstain("could not place every member")
    return _Merged(chosen, order, (added[0], added[1]), (removed[0], removed[1]), sorted_run)


# --------------------------------------------------------------------------- rendering


def _merge_text(texts: list[str | None]) -> str:
    """Three-way merge of the text before (or after) the members: (ours, theirs, base), None
    where that revision has no member in the region."""
    o, t, b = texts
    if o is None or t is None:
        got = o if o is not None else t
        if got is None:
            raise _Abstain("no member on either side")
        return got
    if o == t or (b is not None and t == b):
        return o
    if b is not None and o == b:
        return t
    if text_key(o) == text_key(t):
        return o
    raise _Abstain("both sides changed the text around the members")


def _gaps(side: _Side) -> dict[str, str]:
    """The whitespace before each member of the parent (after the previous member)."""
    out: dict[str, str] = {}
    for a, b in zip(side.members, side.members[1:], strict=False):
        gap = side.rev.text(a.end, b.start)
        if not gap.strip():
            out[b.key] = gap
    return out


def _render(entry: Commutative, sides: list[_Side], merged: _Merged) -> str:
    insides = [s.inside() for s in sides]
    members = [merged.chosen[k] for k in merged.order]
    if not members:
        for side, inside in zip(sides, insides, strict=True):
            if not inside:
                s, e = side.span
                return side.rev.text(s, e)
        raise _Abstain("nothing left")
    leads: list[str | None] = []
    trails: list[str | None] = []
    for side, inside in zip(sides, insides, strict=True):
        s, e = side.span
        leads.append(side.rev.text(s, inside[0].start) if inside else None)
        trails.append(side.rev.text(inside[-1].end, e) if inside else None)
    lead, trail = _merge_text(leads), _merge_text(trails)

    # gaps between consecutive members: in each region (by pair), and anywhere in the parent
    pairs: list[dict[tuple[str, str], str]] = []
    before: list[dict[str, str]] = []  # in the region: key -> the gap before it
    after: list[dict[str, str]] = []  # in the region: key -> the gap after it
    for side, inside in zip(sides, insides, strict=True):
        found = {
            (a.key, b.key): side.rev.text(a.end, b.start)
            for a, b in zip(inside, inside[1:], strict=False)
        }
        pairs.append(found)
        before.append({k[1]: g for k, g in found.items()})
        after.append({k[0]: g for k, g in found.items()})
    anywhere = [_gaps(s) for s in sides]
    common = Counter(anywhere[_OURS].values()).most_common(1)

    def gap(prev: _Member, cur: _Member) -> str:
        """Between two members: the gap an input has between them, else the one the later
        member (or the earlier one) has in its own revision, nearest first."""
        for found in pairs:
            if (prev.key, cur.key) in found:
                return found[(prev.key, cur.key)]
        for table, key in (
            (before[cur.side], cur.key),
            (after[cur.side], cur.key),
            (after[prev.side], prev.key),
            (anywhere[cur.side], cur.key),
        ):
            if key in table:
                return table[key]
        if common:
            return common[0][0]
        raise _Abstain("no separator to use")

    last_comma = False
    if entry.separator:
        for side, inside in zip(sides, insides, strict=True):
            if inside:
                last_comma = inside[-1].comma
                break
            s, e = side.span
            if any(m.start >= e for m in side.members):
                last_comma = True
                break

    def text(m: _Member, last: bool) -> str:
        if not entry.separator:
            return m.text
        need = not last or last_comma
        rev = sides[m.side].rev
        body = rev.text(m.start, m.body_end)
        tail = rev.text(m.body_end, m.end)
        if need and not m.comma:
            return body + entry.separator + tail
        if not need and m.comma and tail.strip() == entry.separator:
            return body
        return m.text

    parts = [lead]
    for i, m in enumerate(members):
        if i:
            parts.append(gap(members[i - 1], m))
        parts.append(text(m, i == len(members) - 1))
    parts.append(trail)
    return "".join(parts)


# --------------------------------------------------------------------------- the stage


def _explain(label: str, merged: _Merged) -> str:
    (ao, at), (ro, rt) = merged.added, merged.removed
    words = f"{ao} added by ours, {at} by theirs"
    if ro or rt:
        words += f"; {ro} removed by ours, {rt} by theirs"
    if merged.sorted_run:
        words += "; kept sorted"
    return f"kept both: merged as members of {label} ({words})"


def _run(hunk: Hunk, lang: str, max_bytes: int, deadline: float) -> StructuredMerge:
    sides, check = _sides(hunk, lang, max_bytes)
    used = _names_used(hunk)
    start = [(s.first, s.last) for s in sides]
    first_reason: _Abstain | None = None
    for want in _parent_levels(lang, sides)[:MAX_LEVELS]:
        if time.monotonic() > deadline:
            raise _TimeUp("time limit")
        for side, (first, last) in zip(sides, start, strict=True):
            side.first, side.last = first, last
        try:
            _set_parents(lang, sides, want)
            parent = sides[_OURS].parent
            assert parent is not None
            for entry in entries_for(lang, parent):  # Python's module: imports, definitions
                for side, (first, last) in zip(sides, start, strict=True):
                    side.first, side.last = first, last
                try:
                    return _merge_at(entry, parent, sides, check, used, deadline)
                except _TimeUp:
                    raise
                except _Abstain as exc:
                    first_reason = first_reason or exc
        except _TimeUp:
            raise
        except _Abstain as exc:
            first_reason = first_reason or exc
    raise first_reason or _Abstain("no parent")


def _merge_at(
    entry: Commutative,
    parent: Node,
    sides: list[_Side],
    check: SyntaxCheck,
    used: frozenset[str],
    deadline: float,
) -> StructuredMerge:
    """The merge with ``entry`` of the parents found in ``sides`` (module doc, 3-7)."""

    def clock() -> None:
        if time.monotonic() > deadline:
            raise _TimeUp("time limit")

    above, below = _extend(entry, sides)
    for side in sides:
        _check_region(side)
    clock()
    ours, theirs, base = (s.inside() for s in sides)
    merged = _merge(entry, base, ours, theirs, _outer(sides[_OURS]))
    in_base = {m.key for m in base}
    elsewhere = {k for side in sides[:2] for k in _outside(side)}
    if any(k in elsewhere for k in merged.order if k not in in_base):
        raise _Abstain("an added member is also elsewhere in the parent")
    imported_elsewhere = {
        n
        for side in sides
        for m in side.members
        if m.key in _outside(side)
        for n in (m.names or ())
    }
    _check_deleted_imports(base, merged, used - imported_elsewhere)
    clock()
    text = _render(entry, sides, merged)
    if sides[_OURS].rev.crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    lines = split_lines(text)
    o = sides[_OURS]
    head = list(o.rev.lines[o.first : o.first + above])
    tail = list(o.rev.lines[o.last - below : o.last]) if below else []
    if lines[:above] != head or (below and lines[len(lines) - below :] != tail):
        raise _Abstain("the merge changed the context lines")
    lines = lines[above : len(lines) - below]
    clock()
    first, last = o.first + above, o.last - below
    candidate = "".join(o.rev.lines[:first]) + "".join(lines) + "".join(o.rev.lines[last:])
    if check.adds_parse_error(candidate):
        raise _Abstain("the merge adds a parse error")
    label = owner_label(entry, parent)
    return StructuredMerge(
        tuple(lines), label, _explain(label, merged), merged.added, merged.removed, entry.parent
    )


def _language(hunk: Hunk) -> str | None:
    """The hunk's language, TypeScript files with JSX read as ``tsx``."""
    from splice.resolver.languages import has_grammar

    lang = hunk.lang
    if lang == "typescript" and (hunk.path or "").lower().endswith(".tsx"):
        lang = "tsx"
    return lang if lang in TABLE and has_grammar(lang) else None


def attempt(
    hunk: Hunk, *, max_bytes: int = 200_000, max_seconds: float = 0.5
) -> StructuredMerge | str:
    """The hunk merged on the syntax tree (module doc), or why the merge abstains, in words."""
    lang = _language(hunk)
    if lang is None:
        return "unsupported language"
    try:
        return _run(hunk, lang, max_bytes, time.monotonic() + max_seconds)
    except _Abstain as exc:
        return str(exc) or "abstained"


def structured_merge(
    hunk: Hunk, *, max_bytes: int = 200_000, max_seconds: float = 0.5
) -> StructuredMerge | None:
    """The hunk merged on the syntax tree (module doc), or None to abstain."""
    found = attempt(hunk, max_bytes=max_bytes, max_seconds=max_seconds)
    return None if isinstance(found, str) else found


def why_not(hunk: Hunk, *, max_bytes: int = 200_000, max_seconds: float = 0.5) -> str | None:
    """Why :func:`structured_merge` abstains on ``hunk`` (None when it answers)."""
    found = attempt(hunk, max_bytes=max_bytes, max_seconds=max_seconds)
    return found if isinstance(found, str) else None
