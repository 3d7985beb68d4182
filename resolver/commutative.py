"""The table of commutative parents: syntax nodes whose children are an unordered set.

One :class:`Commutative` entry says: in ``language``, the children of a ``parent`` node whose
types are in ``members`` can be merged as a set (imports, class members, enum constants, object
entries, struct fields, annotations, keyword arguments), how a member's identity key is computed,
and how the members are separated. The structured merge (:mod:`splice.resolver.structured`)
reads nothing else about a language. Every node type here was checked against the installed
tree-sitter grammars (``tests/test_structured.py`` parses a sample per entry).

Identity keys (:func:`member_key`), by name:

- ``text``: the member's text with all whitespace removed;
- ``name``: the declared name(s) (a ``key`` field for dictionary and object entries, quotes
  dropped; the ``name`` field(s); declarators), else the text;
- ``decl``: the member's kind plus its name (``def f``, ``method_definition get x``); languages
  without overloading;
- ``signature``: ``decl`` plus the parameter list's text (Java and C# overloads);
- ``import``: what an import brings in: Python's ``from`` module, JS/TS's source (and ``type``),
  Go's path, else the text.

A key function may answer None: that child is not a member (e.g. a Python class-body statement
that is not an assignment), and a region holding it is not merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from splice.resolver.chunks import text_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from tree_sitter import Node

#: Node types that are comments in the supported grammars.
COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
#: Anonymous tokens that end a member and belong to it (``a: 1,`` / ``int x;``).
TAILS = frozenset({",", ";"})


@dataclass(frozen=True)
class Commutative:
    """One commutative parent of one language (module doc)."""

    #: The parent's node type.
    parent: str
    #: Node types of its unordered members.
    members: tuple[str, ...]
    #: The identity key's function name (module doc).
    key: str = "text"
    #: For explanations: ``{kind}`` and ``{name}`` are the declaration owning the parent.
    label: str = "{kind} {name}"
    #: The parent's own parent must have one of these types (empty: any).
    within: tuple[str, ...] = ()
    #: Keep a run sorted when both sides' additions keep it sorted (imports, keys).
    sorted: bool = False
    #: "," when members are comma-separated (a member then needs a comma unless it is last).
    separator: str = ""
    #: Sibling node types that belong to the member after them (TypeScript decorators).
    attached: tuple[str, ...] = ()


def _entries(*entries: Commutative) -> tuple[Commutative, ...]:
    return entries


_JS_IMPORTS = Commutative("program", ("import_statement",), "import", "the imports", sorted=True)
#: Top-level declarations of a JS/TS module (functions hoist; each side keeps its own order).
_JS_DECLARATIONS = (
    "export_statement",
    "function_declaration",
    "generator_function_declaration",
    "class_declaration",
    "lexical_declaration",
)
_TS_DECLARATIONS = (
    *_JS_DECLARATIONS,
    "abstract_class_declaration",
    "interface_declaration",
    "type_alias_declaration",
    "enum_declaration",
)
_JS_NAMED_IMPORTS = Commutative(
    "named_imports", ("import_specifier",), "text", "imported names", sorted=True, separator=","
)
_JS_EXPORTS = Commutative(
    "export_clause", ("export_specifier",), "text", "exported names", sorted=True, separator=","
)
_JS_OBJECT = Commutative(
    "object",
    ("pair", "shorthand_property_identifier", "method_definition"),
    "name",
    "object",
    sorted=True,
    separator=",",
)
_JS_PATTERN = Commutative(
    "object_pattern",
    ("pair_pattern", "shorthand_property_identifier_pattern"),
    "name",
    "destructured names",
    sorted=True,
    separator=",",
)
_TS_TYPE_MEMBERS = (
    "property_signature",
    "method_signature",
    "construct_signature",
    "index_signature",
)

_PYTHON = _entries(
    Commutative(
        "module",
        ("import_statement", "import_from_statement", "future_import_statement"),
        "import",
        "the imports",
        sorted=True,
    ),
    Commutative(
        "module",
        ("function_definition", "class_definition", "decorated_definition"),
        "decl",
        "module",
    ),
    Commutative(
        "block",
        ("function_definition", "decorated_definition", "class_definition", "expression_statement"),
        "decl",
        within=("class_definition",),
    ),
    Commutative("decorated_definition", ("decorator",), "text", "decorators of {name}"),
    Commutative("dictionary", ("pair",), "name", "dictionary", sorted=True, separator=","),
    Commutative(
        "argument_list", ("keyword_argument",), "name", "keyword arguments of {name}", separator=","
    ),
)

_JAVA_MEMBERS = (
    "method_declaration",
    "field_declaration",
    "constructor_declaration",
    "compact_constructor_declaration",
    "class_declaration",
    "interface_declaration",
    "enum_declaration",
    "record_declaration",
    "annotation_type_declaration",
)
_JAVA = _entries(
    Commutative("program", ("import_declaration",), "text", "the imports", sorted=True),
    Commutative("class_body", _JAVA_MEMBERS, "signature"),
    Commutative("enum_body_declarations", _JAVA_MEMBERS, "signature"),
    Commutative("interface_body", (*_JAVA_MEMBERS, "constant_declaration"), "signature"),
    Commutative(
        "annotation_type_body",
        ("annotation_type_element_declaration", "constant_declaration"),
        "name",
    ),
    Commutative("enum_body", ("enum_constant",), "name", separator=","),
    Commutative("modifiers", ("marker_annotation", "annotation"), "text", "annotations of {name}"),
)

_JAVASCRIPT = _entries(
    _JS_IMPORTS,
    Commutative("program", _JS_DECLARATIONS, "decl", "module"),
    _JS_NAMED_IMPORTS,
    _JS_EXPORTS,
    Commutative("class_body", ("method_definition", "field_definition"), "decl"),
    _JS_OBJECT,
    _JS_PATTERN,
)

_TYPESCRIPT = _entries(
    _JS_IMPORTS,
    Commutative("program", _TS_DECLARATIONS, "decl", "module"),
    _JS_NAMED_IMPORTS,
    _JS_EXPORTS,
    Commutative(
        "class_body",
        (
            "method_definition",
            "public_field_definition",
            "method_signature",
            "abstract_method_signature",
            "index_signature",
        ),
        "decl",
        attached=("decorator",),
    ),
    Commutative("interface_body", _TS_TYPE_MEMBERS, "decl"),
    Commutative("object_type", _TS_TYPE_MEMBERS, "decl", "type"),
    Commutative("enum_body", ("enum_assignment", "property_identifier"), "name", separator=","),
    _JS_OBJECT,
    _JS_PATTERN,
)

_CSHARP_TYPES = (
    "class_declaration",
    "struct_declaration",
    "interface_declaration",
    "record_declaration",
    "enum_declaration",
    "delegate_declaration",
)
_CSHARP = _entries(
    Commutative("compilation_unit", ("using_directive",), "text", "the usings", sorted=True),
    Commutative(
        "declaration_list",
        ("using_directive",),
        "text",
        "the usings",
        within=("namespace_declaration",),
        sorted=True,
    ),
    Commutative(
        "declaration_list",
        (
            "method_declaration",
            "property_declaration",
            "field_declaration",
            "constructor_declaration",
            "destructor_declaration",
            "event_declaration",
            "event_field_declaration",
            "indexer_declaration",
            "operator_declaration",
            "conversion_operator_declaration",
            *_CSHARP_TYPES,
        ),
        "signature",
        within=("class_declaration", "struct_declaration", "interface_declaration")
        + ("record_declaration",),
    ),
    Commutative(
        "enum_member_declaration_list", ("enum_member_declaration",), "name", separator=","
    ),
    *(
        Commutative(parent, ("attribute_list",), "text", "attributes of {name}")
        for parent in (
            *_CSHARP_TYPES,
            "method_declaration",
            "property_declaration",
            "field_declaration",
            "constructor_declaration",
        )
    ),
)

_GO = _entries(
    Commutative("import_spec_list", ("import_spec",), "import", "the imports", sorted=True),
    Commutative("source_file", ("import_declaration",), "text", "the imports", sorted=True),
    Commutative(
        "source_file",
        ("function_declaration", "method_declaration", "type_declaration"),
        "decl",
        "file",
    ),
    Commutative("field_declaration_list", ("field_declaration",), "name", "struct {name}"),
    Commutative("interface_type", ("method_elem", "type_elem"), "name", "interface {name}"),
    Commutative("literal_value", ("keyed_element",), "name", "literal", separator=","),
)

#: Language -> its commutative parents.
TABLE: dict[str, tuple[Commutative, ...]] = {
    "python": _PYTHON,
    "java": _JAVA,
    "javascript": _JAVASCRIPT,
    "typescript": _TYPESCRIPT,
    "tsx": _TYPESCRIPT,
    "csharp": _CSHARP,
    "go": _GO,
}


def entries_for(lang: str | None, parent: Node) -> list[Commutative]:
    """The entries of ``lang`` whose parent is ``parent`` (its type and, if asked, its own
    parent's)."""
    out = []
    for entry in TABLE.get(lang or "", ()):
        if entry.parent != parent.type:
            continue
        if entry.within and (parent.parent is None or parent.parent.type not in entry.within):
            continue
        out.append(entry)
    return out


# --------------------------------------------------------------------------- keys


def _text(node: Node | None) -> str:
    return "" if node is None or node.text is None else node.text.decode("utf-8", "replace")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        return text[1:-1]
    return text


#: Nodes that hold a declaration's name(s) further down.
_HOLDERS = frozenset(
    {"variable_declaration", "variable_declarator", "type_spec", "assignment", "const_spec"}
)


def declared_names(node: Node, depth: int = 0) -> list[str]:
    """The names a member declares: its ``key`` or ``name`` field(s), else those of its
    ``definition``/``declarator``/``left`` parts or declaration-holding children."""
    if depth > 3:
        return []
    for field in ("key", "name"):
        found = node.children_by_field_name(field)
        if found:
            return [_unquote(text_key(_text(n))) for n in found]
    names: list[str] = []
    for field in ("definition", "declaration", "declarator", "left"):
        for child in node.children_by_field_name(field):
            if child.named_child_count == 0:
                names.append(text_key(_text(child)))
            else:
                names.extend(declared_names(child, depth + 1))
    if names:
        return names
    for child in node.named_children:
        if child.type in _HOLDERS:
            names.extend(declared_names(child, depth + 1))
    if not names and node.named_child_count == 0 and depth == 0:
        names.append(text_key(_text(node)))
    return names


#: Keywords that tell two members of one name apart (a getter and its setter, the default export).
_KEYWORDS = frozenset({"get", "set", "static", "default"})


def _kind(node: Node) -> str:
    """The member's kind: its type, the wrapped definition's for a Python decorated one, plus
    the accessor and ``static`` keywords of a JS/TS method."""
    if node.type == "decorated_definition":
        inner = node.child_by_field_name("definition")
        if inner is not None:
            return inner.type
    words = [c.type for c in node.children if not c.is_named and c.type in _KEYWORDS]
    return " ".join([node.type, *words])


def _name_key(node: Node) -> str | None:
    names = declared_names(node)
    return ",".join(names) if names else text_key(_text(node))


def _decl_key(node: Node) -> str | None:
    if node.type == "expression_statement":  # a Python class attribute, not any statement
        inner = node.named_children[0] if node.named_child_count else None
        if inner is None or inner.type != "assignment":
            return None
    kind = _kind(node)
    if kind.endswith(" default"):  # one default export per module, whatever its name
        return kind
    names = declared_names(node)
    if not names:
        return text_key(_text(node))
    receiver = node.child_by_field_name("receiver")  # a Go method's receiver type
    if receiver is not None:
        names = [text_key(_text(receiver)), *names]
    return f"{kind} {','.join(names)}"


def _signature_key(node: Node) -> str | None:
    decl = _decl_key(node)
    if decl is None:
        return None
    params = node.child_by_field_name("parameters")
    return decl if params is None else f"{decl}{text_key(_text(params))}"


def _import_key(node: Node) -> str | None:
    if node.type == "import_from_statement":
        return "from " + text_key(_text(node.child_by_field_name("module_name")))
    if node.type in ("import_statement", "import_spec"):
        source = node.child_by_field_name("source") or node.child_by_field_name("path")
        if source is not None:
            typed = any(not c.is_named and c.type == "type" for c in node.children)
            return ("import type " if typed else "import ") + _unquote(text_key(_text(source)))
    return text_key(_text(node))


def _field_key(field: str) -> Callable[[Node], str | None]:
    def key(node: Node) -> str | None:
        child = node.child_by_field_name(field)
        return None if child is None else _unquote(text_key(_text(child)))

    return key


KEYS: dict[str, Callable[[Node], str | None]] = {
    "text": lambda node: text_key(_text(node)),
    "name": _name_key,
    "decl": _decl_key,
    "signature": _signature_key,
    "import": _import_key,
}


def member_key(entry: Commutative, node: Node) -> str | None:
    """The identity key of ``node`` as a member of ``entry`` (None: not a member)."""
    if node.type not in entry.members:
        return None
    if entry.key.startswith("field:"):
        return _field_key(entry.key.removeprefix("field:"))(node)
    return KEYS[entry.key](node)


def sort_key(entry: Commutative, node: Node) -> str:
    """What a sorted run is sorted by: an import's module path (without ``import``, ``using``,
    ``from``, ``type`` or ``;``), else the identity key."""
    if node.type == "import_from_statement":
        return _text(node.child_by_field_name("module_name"))
    source = node.child_by_field_name("source") or node.child_by_field_name("path")
    if node.type in ("import_statement", "import_spec") and source is not None:
        return _unquote(_text(source))
    if node.type in ("import_statement", "import_declaration", "using_directive"):
        words = " ".join(_text(node).split()).rstrip(";").split(" ")
        return " ".join(words[1:])
    return member_key(entry, node) or ""


def _last_word(text: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9_$]+", text) if w]
    return words[-1] if words else ""


def imported_names(node: Node) -> tuple[str, ...] | None:
    """The names an import brings into the file (None: not an import, or not known, as for a
    C# namespace or a wildcard)."""
    if node.type == "import_statement" and node.child_by_field_name("source") is None:
        found = []  # Python's ``import a.b, c as d``
        for name in node.children_by_field_name("name"):
            alias = name.child_by_field_name("alias")
            found.append(_text(alias) if alias else _text(name).split(".")[0])
        return tuple(found)
    if node.type == "import_from_statement":
        if any(c.type == "wildcard_import" for c in node.children):
            return None
        found = []
        for name in node.children_by_field_name("name"):
            alias = name.child_by_field_name("alias")
            found.append(_text(alias) if alias else _last_word(_text(name)))
        return tuple(found)
    if node.type == "import_statement":  # JS/TS
        clause = next((c for c in node.named_children if c.type == "import_clause"), None)
        if clause is None:
            return ()
        found = []
        for part in clause.named_children:
            if part.type == "identifier":
                found.append(_text(part))
            elif part.type == "namespace_import":
                found.extend(_text(c) for c in part.named_children)
            elif part.type == "named_imports":
                for spec in part.named_children:
                    alias = spec.child_by_field_name("alias") or spec.child_by_field_name("name")
                    if alias is not None:
                        found.append(_text(alias))
        return tuple(found)
    if node.type == "import_declaration" and node.named_child_count:
        first = node.named_children[0]
        if first.type in ("import_spec", "import_spec_list"):  # Go's ``import "x"``
            specs = [first] if first.type == "import_spec" else first.named_children
            found = []
            for spec in specs:
                names = imported_names(spec) if spec.type == "import_spec" else ()
                if names is None:
                    return None
                found.extend(names)
            return tuple(found)
        if any(c.type == "asterisk" for c in node.children):  # Java
            return None
        return (_last_word(_text(first)),)
    if node.type == "import_spec":  # Go
        alias = node.child_by_field_name("name")
        if alias is not None:
            return () if _text(alias) in ("_", ".") else (_text(alias),)
        path = _unquote(_text(node.child_by_field_name("path"))).split("/")
        if len(path) > 1 and re.fullmatch(r"v[0-9]+", path[-1]):
            path = path[:-1]
        return (path[-1].replace("-", "_"),) if path and path[-1] else None
    return None


def short_name(key: str) -> str:
    """A ``signature`` key without its parameters: the members an overload shares a name with."""
    return key.split("(", 1)[0]


def _owner(parent: Node) -> tuple[Node, str]:
    """The declaration a parent belongs to (itself or up to two levels up) and its name."""
    owner: Node | None = parent
    for _ in range(3):
        if owner is None:
            break
        found = owner.child_by_field_name("name")
        if found is None:
            inner = owner.child_by_field_name("definition") or owner.child_by_field_name("function")
            if inner is not None and inner.type in ("identifier", "attribute"):
                found = inner
            elif inner is not None:
                found = inner.child_by_field_name("name")
        if found is not None:
            return owner, _text(found)
        owner = owner.parent
    return parent, ""


def owner_name(parent: Node) -> str:
    """The name of the declaration owning ``parent`` ("" when none): how the three revisions'
    parents are matched."""
    return _owner(parent)[1]


def owner_label(entry: Commutative, parent: Node) -> str:
    """The parent in words for explanations (``class Foo``, ``the imports``, ``enum Color``)."""
    if "{" not in entry.label:
        return entry.label
    owner, name = _owner(parent)
    kind = owner.type
    for suffix in ("_declaration", "_definition", "_spec", "_body", "_type"):
        kind = kind.removesuffix(suffix)
    return entry.label.format(kind=kind, name=name or "?").strip()
