"""The table of commutative parents: syntax nodes whose children are an unordered set.

One :class:`Commutative` entry says: in ``language``, the children of a ``parent`` node whose
types are in ``members`` can be merged as a set (imports, class members, enum constants, object
entries, struct fields, annotations, keyword arguments), how a member's identity key is computed,
and how the members are separated. The structured merge (:mod:`splice.resolver.structured`)
reads nothing else about a language. Every node type here was checked against the installed
tree-sitter grammars (``tests/test_structured.py`` and, for the grammars added later,
``tests/test_structured_more.py`` parse a sample per entry).

Identity keys (:func:`member_key`), by name:

- ``text``: the member's text with all whitespace removed;
- ``name``: the declared name(s) (a ``key`` field for dictionary and object entries, quotes
  dropped; the ``name`` field(s); declarators), else the text;
- ``decl``: the member's kind plus its name (``def f``, ``method_definition get x``); languages
  without overloading;
- ``signature``: ``decl`` plus the parameter list's text (Java and C# overloads);
- ``import``: what an import brings in: Python's ``from`` module, JS/TS's source (and ``type``),
  Go's path, Rust's ``use`` path (visibility and attributes aside), else the text;
- ``member``: ``decl`` for the grammars added later, whose members name themselves in more ways
  (:func:`member_names`): a ``field`` or ``pattern`` field (Rust field initializers, Scala
  ``val``), a Kotlin property's variable, PHP's property and constant elements, a Rust ``impl``'s
  trait and type, a TOML key, a CSS property or selector;
- ``overload``: ``member`` plus the parameter list (Kotlin, Scala, Swift and C++ overloads; a C++
  function declarator's parameters and qualifiers);
- ``entry``: the name(s) of ``member`` without the kind, None for an entry without a key (a PHP
  array's or a Lua table's positional element): only keyed entries are members;
- ``field:X``: the text of the member's field ``X``, quotes dropped (C's ``#include`` path);
- ``xml``: an XML element's name and its MSBuild identity attributes (``Include``, ``Update``,
  ``Remove``, ``Condition``).

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
COMMENTS = frozenset(
    {"comment", "line_comment", "block_comment", "multiline_comment", "js_comment", "Comment"}
)
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
    #: The declaration owning the parent must have one of these names (empty: any): an XML
    #: element's children are a set only in MSBuild's ``ItemGroup`` and ``PropertyGroup``.
    owned_by: tuple[str, ...] = ()


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

# The grammars added later (docs/STRUCTURED.md, "More languages"). Attributes, annotations and
# doc comments written before a member belong to it (``attached``); ordered children (statements,
# initializer blocks, arrays of tables, ``private`` sections) are no members, so a region holding
# one is not merged.

_RUST_ITEMS = (
    "function_item",
    "struct_item",
    "enum_item",
    "union_item",
    "trait_item",
    "impl_item",
    "mod_item",
    "const_item",
    "static_item",
    "type_item",
)
_RUST_USES = Commutative(
    "source_file",
    ("use_declaration",),
    "import",
    "the uses",
    sorted=True,
    attached=("attribute_item",),
)
_RUST = _entries(
    _RUST_USES,
    Commutative("source_file", _RUST_ITEMS, "member", "module", attached=("attribute_item",)),
    Commutative(
        "declaration_list",
        ("use_declaration",),
        "import",
        "the uses",
        within=("mod_item",),
        sorted=True,
        attached=("attribute_item",),
    ),
    Commutative(
        "declaration_list",
        _RUST_ITEMS,
        "member",
        "mod {name}",
        within=("mod_item",),
        attached=("attribute_item",),
    ),
    Commutative(
        "declaration_list",
        (
            "function_item",
            "function_signature_item",
            "const_item",
            "type_item",
            "associated_type",
        ),
        "member",
        "{kind} {name}",
        within=("impl_item", "trait_item"),
        attached=("attribute_item",),
    ),
    Commutative(
        "field_declaration_list",
        ("field_declaration",),
        "name",
        "fields of {name}",
        separator=",",
        attached=("attribute_item",),
    ),
    Commutative(
        "enum_variant_list",
        ("enum_variant",),
        "name",
        "enum {name}",
        separator=",",
        attached=("attribute_item",),
    ),
    Commutative(
        "field_initializer_list",
        ("field_initializer", "shorthand_field_initializer"),
        "entry",
        "fields of {name}",
        separator=",",
    ),
)

_C_INCLUDES = tuple(
    Commutative(parent, ("preproc_include",), "field:path", "the includes", sorted=True)
    for parent in (
        "translation_unit",
        "preproc_ifdef",
        "preproc_if",
        "preproc_else",
        "preproc_elif",
    )
)
_C_ENUMERATORS = Commutative(
    "enumerator_list", ("enumerator",), "name", "enum {name}", separator=","
)
_C = _entries(
    *_C_INCLUDES,
    Commutative("field_declaration_list", ("field_declaration",), "name", "struct {name}"),
    _C_ENUMERATORS,
    Commutative(
        "initializer_list", ("initializer_pair",), "field:designator", "initializer", separator=","
    ),
)
_CPP = _entries(
    *_C_INCLUDES,
    Commutative(
        "field_declaration_list",
        (
            "field_declaration",
            "declaration",
            "function_definition",
            "template_declaration",
            "alias_declaration",
            "type_definition",
        ),
        "overload",
        "{kind} {name}",
    ),
    _C_ENUMERATORS,
)

_KOTLIN_MEMBERS = (
    "property_declaration",
    "function_declaration",
    "class_declaration",
    "object_declaration",
    "companion_object",
    "secondary_constructor",
    "type_alias",
)
_KOTLIN = _entries(
    Commutative("source_file", ("import",), "text", "the imports", sorted=True),
    Commutative(
        "source_file",
        ("function_declaration", "class_declaration", "object_declaration", "type_alias"),
        "overload",
        "file",
    ),
    Commutative("class_body", _KOTLIN_MEMBERS, "overload"),
    Commutative("enum_class_body", _KOTLIN_MEMBERS, "overload"),
    Commutative("enum_class_body", ("enum_entry",), "entry", "enum {name}", separator=","),
)

_SCALA_MEMBERS = (
    "val_definition",
    "var_definition",
    "val_declaration",
    "var_declaration",
    "function_definition",
    "function_declaration",
    "type_definition",
    "class_definition",
    "object_definition",
    "trait_definition",
    "enum_definition",
)
_SCALA = _entries(
    Commutative("compilation_unit", ("import_declaration",), "text", "the imports", sorted=True),
    Commutative("template_body", _SCALA_MEMBERS, "overload"),
)

_SWIFT_MEMBERS = (
    "property_declaration",
    "function_declaration",
    "init_declaration",
    "deinit_declaration",
    "subscript_declaration",
    "class_declaration",
    "protocol_declaration",
    "typealias_declaration",
)
_SWIFT = _entries(
    Commutative("source_file", ("import_declaration",), "text", "the imports", sorted=True),
    Commutative("class_body", _SWIFT_MEMBERS, "overload"),
    Commutative("enum_class_body", (*_SWIFT_MEMBERS, "enum_entry"), "overload", "enum {name}"),
    Commutative(
        "protocol_body",
        ("protocol_function_declaration", "protocol_property_declaration"),
        "overload",
        "protocol {name}",
    ),
)

_RUBY = _entries(
    Commutative(
        "body_statement",
        ("method", "singleton_method", "class", "module"),
        "member",
        within=("class", "module", "singleton_class"),
    ),
    Commutative("hash", ("pair",), "name", "hash", separator=","),
)

_PHP_MEMBERS = ("method_declaration", "property_declaration", "const_declaration")
_PHP = _entries(
    Commutative("program", ("namespace_use_declaration",), "text", "the uses", sorted=True),
    Commutative(
        "compound_statement",
        ("namespace_use_declaration",),
        "text",
        "the uses",
        within=("namespace_definition",),
        sorted=True,
    ),
    Commutative(
        "declaration_list",
        (*_PHP_MEMBERS, "use_declaration"),
        "member",
        within=("class_declaration", "interface_declaration", "trait_declaration"),
    ),
    Commutative("enum_declaration_list", (*_PHP_MEMBERS, "enum_case"), "member", "enum {name}"),
    Commutative(
        "array_creation_expression", ("array_element_initializer",), "entry", "array", separator=","
    ),
)

_LUA = _entries(Commutative("table_constructor", ("field",), "entry", "table", separator=","))

_JSON = _entries(Commutative("object", ("pair",), "name", "object", sorted=True, separator=","))

_YAML = _entries(
    Commutative("block_mapping", ("block_mapping_pair",), "name", "mapping"),
    Commutative("flow_mapping", ("flow_pair",), "name", "mapping", separator=","),
)

_TOML = _entries(
    Commutative("document", ("pair", "table"), "member", "document"),
    Commutative("table", ("pair",), "entry", "table [{name}]"),
)

_CSS = _entries(
    Commutative("block", ("declaration",), "entry", "rule {name}", within=("rule_set",)),
    Commutative("stylesheet", ("rule_set",), "entry", "the rules"),
    Commutative("block", ("rule_set",), "entry", "the rules", within=("media_statement",)),
)

#: MSBuild project files (.csproj, .props, .targets): items (``<PackageReference Include="A"
#: />``) are a set keyed by their kind and ``Include`` / ``Update`` / ``Remove``; properties by
#: their name; both by their ``Condition`` too. Other XML keeps its order (no entry).
_XML = _entries(
    Commutative(
        "content",
        ("element",),
        "xml",
        "the items of <{name}>",
        within=("element",),
        sorted=True,
        owned_by=("ItemGroup",),
    ),
    Commutative(
        "content",
        ("element",),
        "xml",
        "the properties of <{name}>",
        within=("element",),
        owned_by=("PropertyGroup",),
    ),
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
    "rust": _RUST,
    "c": _C,
    "cpp": _CPP,
    "kotlin": _KOTLIN,
    "scala": _SCALA,
    "swift": _SWIFT,
    "ruby": _RUBY,
    "php": _PHP,
    "lua": _LUA,
    "json": _JSON,
    "yaml": _YAML,
    "toml": _TOML,
    "css": _CSS,
    "xml": _XML,
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
        if entry.owned_by and owner_name(parent) not in entry.owned_by:
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


def _use_path(node: Node) -> str:
    """A Rust ``use``'s path, without its visibility, attributes, ``;`` or spaces (but those
    around ``as``)."""
    parts = re.split(r"\s+as\s+", _text(node.child_by_field_name("argument")))
    return " as ".join(text_key(part) for part in parts)


def _import_key(node: Node) -> str | None:
    if node.type == "use_declaration":
        return "use " + _use_path(node)
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


#: Member types whose name is their first named child (before a ``=``, ``=>`` or ``:`` where
#: they have one): TOML keys, CSS properties, PHP array keys, Kotlin enum entries, Rust
#: shorthand fields.
_FIRST_CHILD_NAMED = frozenset(
    {
        "pair",  # TOML (JSON, Ruby and the others have a key field)
        "table",
        "declaration",  # CSS
        "array_element_initializer",
        "enum_entry",  # Kotlin
        "shorthand_field_initializer",
        "rule_set",  # CSS, by its selectors
    }
)
#: Of those, the types whose elements may also be positional (no key-ending token): no name then.
_KEYED_ONLY = frozenset({"pair", "declaration", "array_element_initializer"})
#: Anonymous tokens that end an entry's key.
_KEY_ENDS = frozenset({"=", "=>", ":"})
#: Kotlin members without a name of their own -> their name.
_UNNAMED = {"companion_object": "companion", "secondary_constructor": "constructor"}
#: Children holding a member's declared name (Kotlin properties, PHP properties and constants).
_NAME_HOLDERS = frozenset(
    {"variable_declaration", "multi_variable_declaration", "property_element", "const_element"}
)


def _impl_name(node: Node) -> str:
    """A Rust ``impl``'s trait and type (``Display for S``, ``S``)."""
    trait, kind = node.child_by_field_name("trait"), node.child_by_field_name("type")
    words = [] if trait is None else [text_key(_text(trait)), "for"]
    return " ".join([*words, text_key(_text(kind))])


def member_names(node: Node) -> list[str]:
    """The names a member of a grammar added later declares: :func:`declared_names`, else its
    ``field`` or ``pattern`` field, the variables or elements it holds, a Rust ``impl``'s trait
    and type, or its first named child for the :data:`_FIRST_CHILD_NAMED` types (keyed ones
    only, when a key-ending token follows it)."""
    if node.type == "impl_item":
        return [_impl_name(node)]
    if node.type in _UNNAMED:  # Kotlin's (one per class unless named; overloads by parameters)
        named = node.child_by_field_name("name")
        return [_text(named) if named is not None else _UNNAMED[node.type]]
    if node.type == "type_alias":  # Kotlin names it in its ``type`` field
        return [text_key(_text(node.child_by_field_name("type")))]
    names = declared_names(node)
    if names:
        return names
    if node.type in _FIRST_CHILD_NAMED:
        first = node.named_children[0] if node.named_child_count else None
        keyed = [c for c in node.children if not c.is_named and c.type in _KEY_ENDS]
        positional = not keyed and node.type in _KEYED_ONLY
        before = not keyed or (first is not None and first.start_byte < keyed[0].start_byte)
        if first is not None and first.type not in COMMENTS and not positional and before:
            return [_unquote(text_key(_text(first)))]
    for field in ("field", "pattern"):
        found = node.children_by_field_name(field)
        if found:
            return [_unquote(text_key(_text(n))) for n in found]
    holders = [c for c in node.named_children if c.type in _NAME_HOLDERS]
    for child in holders:
        if child.type == "multi_variable_declaration":  # Kotlin's ``val (a, b) = pair``
            holders += [c for c in child.named_children if c.type in _NAME_HOLDERS]
            continue
        held = child.child_by_field_name("name") or (
            child.named_children[0] if child.named_child_count else None
        )
        if held is not None:
            names.append(text_key(_text(held)))
    chain = _declarators(node)
    if not names and chain and chain[-1].type in _DECLARED_NAMES:
        names.append(text_key(_text(chain[-1])))
    return names


#: Innermost C++ declarators that are a name: ``~C``, ``operator==``, ``A::f``.
_DECLARED_NAMES = frozenset(
    {"destructor_name", "operator_name", "qualified_identifier", "field_identifier", "identifier"}
)


def _declarators(node: Node) -> list[Node]:
    """A C/C++ declaration's declarators, outermost first, through pointers, references, arrays
    and functions (a reference declarator holds its inner one without a field)."""
    out: list[Node] = []
    found = node.child_by_field_name("declarator")
    while found is not None and len(out) < 8:
        out.append(found)
        inner = found.child_by_field_name("declarator")
        if inner is None and found.type == "reference_declarator" and found.named_child_count:
            inner = found.named_children[-1]
        found = inner
    return out


def _member_key(node: Node) -> str | None:
    names = member_names(node)
    if not names:
        return text_key(_text(node))
    return f"{_kind(node)} {','.join(names)}"


#: Parameter lists that are no ``parameters`` field (Kotlin).
_PARAMETER_LISTS = frozenset({"function_value_parameters", "parameter_list", "formal_parameters"})


def _parameters(node: Node) -> str:
    """A member's parameter list as text ("" when it has none): its ``parameters`` field, a
    parameter-list child, Swift's ``parameter`` children, or a C/C++ function declarator's
    parameters and what follows them (``const``, ``override``)."""
    params = node.child_by_field_name("parameters")
    if params is None:
        params = next((c for c in node.named_children if c.type in _PARAMETER_LISTS), None)
    if params is not None:
        return text_key(_text(params))
    swift = [text_key(_text(c)) for c in node.named_children if c.type == "parameter"]
    if swift:
        return "(" + ",".join(swift) + ")"
    for declarator in _declarators(node):
        inner = declarator.child_by_field_name("parameters")
        if declarator.type == "function_declarator" and inner is not None:
            rest = (declarator.text or b"")[inner.start_byte - declarator.start_byte :]
            return text_key(rest.decode("utf-8", "replace"))
    return ""


def _overload_key(node: Node) -> str | None:
    if node.type == "template_declaration" and node.named_child_count:
        inner = node.named_children[-1]
        names = member_names(inner)
        if names:
            return f"template {_kind(inner)} {','.join(names)}{_parameters(inner)}"
    key = _member_key(node)
    return None if key is None else f"{key}{_parameters(node)}"


def _entry_key(node: Node) -> str | None:
    names = member_names(node)
    return ",".join(names) if names else None


#: The attributes that tell MSBuild items (and conditional properties) apart.
XML_IDENTITY = ("Include", "Update", "Remove", "Condition")


def _xml_tag(node: Node) -> Node | None:
    """An XML element's start tag (``STag`` or ``EmptyElemTag``)."""
    return next((c for c in node.children if c.type in ("STag", "EmptyElemTag")), None)


def xml_name(node: Node) -> str:
    """An XML element's tag name ("" for another node)."""
    tag = _xml_tag(node) if node.type == "element" else None
    name = None if tag is None else next((c for c in tag.children if c.type == "Name"), None)
    return _text(name)


def _xml_key(node: Node) -> str | None:
    """An element's name and its identity attributes (:data:`XML_IDENTITY`)."""
    name, tag = xml_name(node), _xml_tag(node)
    if not name or tag is None:
        return None
    found = {}
    for attribute in (c for c in tag.children if c.type == "Attribute"):
        parts = {c.type: _text(c) for c in attribute.children}
        if parts.get("Name") in XML_IDENTITY:
            found[parts["Name"]] = _unquote(parts.get("AttValue", ""))
    return " ".join([name, *(f"{k}={found[k]}" for k in XML_IDENTITY if k in found)])


KEYS: dict[str, Callable[[Node], str | None]] = {
    "text": lambda node: text_key(_text(node)),
    "name": _name_key,
    "decl": _decl_key,
    "signature": _signature_key,
    "import": _import_key,
    "member": _member_key,
    "overload": _overload_key,
    "entry": _entry_key,
    "xml": _xml_key,
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
    if node.type == "use_declaration" and node.child_by_field_name("argument") is not None:
        return _text(node.child_by_field_name("argument"))
    if node.type in (
        "import_statement",
        "import_declaration",
        "using_directive",
        "import",  # Kotlin
        "namespace_use_declaration",  # PHP
    ):
        words = " ".join(_text(node).split()).rstrip(";").split(" ")
        return " ".join(words[1:])
    if entry.key == "xml":  # Visual Studio sorts project items ignoring case
        return (member_key(entry, node) or "").lower()
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
    if node.type == "use_declaration":  # Rust
        return _rust_use_names(node.child_by_field_name("argument"))
    if node.type == "import" or node.type == "namespace_use_declaration":  # Kotlin, PHP
        return _alias_or_last(node)
    if node.type == "import_declaration" and node.child_by_field_name("path") is not None:
        return _alias_or_last(node)  # Scala
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


def _rust_use_names(node: Node | None) -> tuple[str, ...] | None:
    """The names a Rust ``use`` argument brings in (None for a glob)."""
    if node is None or node.type == "use_wildcard":
        return None
    if node.type == "use_as_clause":
        return (_text(node.child_by_field_name("alias")),)
    if node.type in ("scoped_use_list", "use_list"):
        items = node.child_by_field_name("list") if node.type == "scoped_use_list" else node
        found: list[str] = []
        for item in items.named_children if items is not None else ():
            if item.type == "self":  # ``use a::b::{self}`` brings ``b``
                path = node.child_by_field_name("path")
                found.append(_last_word(_text(path)))
                continue
            names = _rust_use_names(item)
            if names is None:
                return None
            found.extend(names)
        return tuple(found)
    return (_last_word(_text(node)),)


def _alias_or_last(node: Node) -> tuple[str, ...] | None:
    """The names a Kotlin, Scala or PHP import brings in: each clause's alias, else its last
    name (None for a wildcard)."""
    if any(c.type in ("*", "namespace_wildcard") for c in node.children):
        return None
    kids = node.named_children
    group = next(
        (c for c in kids if c.type in ("namespace_use_group", "namespace_selectors")), None
    )
    if group is not None:
        kids = group.named_children
    clauses = [c for c in kids if c.type in ("namespace_use_clause", "identifier")]
    clauses += [c for c in kids if c.type == "arrow_renamed_identifier"]
    if node.type != "namespace_use_declaration" and group is None:
        clauses = [node]  # Kotlin's and Scala's single import
    found = []
    for clause in clauses:
        alias = clause.child_by_field_name("alias")
        if clause.type == "import" and clause.named_child_count > 1:  # ``import a.B as C``
            alias = clause.named_children[-1]
        found.append(_text(alias) if alias is not None else _last_word(_text(clause)))
    return tuple(found)


def short_name(key: str) -> str:
    """A ``signature`` key without its parameters: the members an overload shares a name with."""
    return key.split("(", 1)[0]


def _first_child_name(node: Node) -> str:
    return _text(node.named_children[0]) if node.named_child_count else ""


def _key_name(node: Node) -> str:
    return _text(node.child_by_field_name("key"))


#: Owners named otherwise than by a ``name`` field: a Rust ``impl`` by its trait and type, a TOML
#: table by its header, a YAML mapping by its key, a CSS rule by its selectors.
_OWNER_NAMES: dict[str, Callable[[Node], str]] = {
    "impl_item": _impl_name,
    "table": _first_child_name,
    "block_mapping_pair": _key_name,
    "flow_pair": _key_name,
    "rule_set": _first_child_name,
    "element": xml_name,
}


def _owner(parent: Node) -> tuple[Node, str]:
    """The declaration a parent belongs to (itself or up to two levels up) and its name."""
    owner: Node | None = parent
    for _ in range(3):
        if owner is None:
            break
        naming = _OWNER_NAMES.get(owner.type)
        if naming is not None and naming(owner):
            return owner, naming(owner)
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
    for suffix in ("_declaration", "_definition", "_spec", "_body", "_type", "_item", "_specifier"):
        kind = kind.removesuffix(suffix)
    return entry.label.format(kind=kind, name=name or "?").strip()
