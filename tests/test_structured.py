"""The structured merge: commutative members merged as sets on real tree-sitter parses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from splice.resolver.chunks import Conflict, Stable, split_lines, text_key
from splice.resolver.commutative import TABLE
from splice.resolver.languages import grammar
from splice.resolver.pipeline import find_hunks
from splice.resolver.resolvers import Hunk
from splice.resolver.structured import StructuredMerge, structured_merge

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"


def merge(
    lang: str, base: str, ours: str, theirs: str, **limits: float
) -> tuple[StructuredMerge | None, str | None]:
    """The structured answer to the file's one conflict, and the whole merged file with it."""
    chunks, reports = find_hunks(split_lines(base), split_lines(ours), split_lines(theirs), lang)
    assert len(reports) == 1, "each case holds exactly one line-level conflict"
    answer = structured_merge(reports[0].hunk, **limits)  # type: ignore[arg-type]
    if answer is None:
        return None, None
    out = []
    for chunk in chunks:
        out.extend(chunk.units if isinstance(chunk, Stable) else answer.lines)
    return answer, "".join(out)


def check(lang: str, base: str, ours: str, theirs: str, expected: str) -> StructuredMerge:
    answer, text = merge(lang, base, ours, theirs)
    assert answer is not None, "the structured merge abstained"
    assert text == expected
    return answer


def test_table_names_real_node_types() -> None:
    for lang, entries in TABLE.items():
        g = grammar(lang)
        for entry in entries:
            for kind in (entry.parent, *entry.members, *entry.within, *entry.attached):
                assert g.id_for_node_kind(kind, True) is not None, (lang, kind)


# --------------------------------------------------------------------------- imports


def test_python_imports_sorted() -> None:
    base = "import os\nimport sys\n\nprint(os, sys)\n"
    ours = "import os\nimport re\nimport sys\n\nprint(os, sys)\n"
    theirs = "import os\nimport json\nimport sys\n\nprint(os, sys)\n"
    # "json" < "os": theirs' own run is not sorted, so ours first, then theirs
    got = check(
        "python",
        base,
        ours,
        theirs,
        "import os\nimport re\nimport json\nimport sys\n\nprint(os, sys)\n",
    )
    assert got.added == (1, 1) and got.parent == "the imports"
    theirs = "import os\nimport shutil\nimport sys\n\nprint(os, sys)\n"
    got = check(
        "python",
        base,
        ours,
        theirs,
        "import os\nimport re\nimport shutil\nimport sys\n\nprint(os, sys)\n",
    )
    assert "kept sorted" in got.explanation


def test_python_imports_unsorted_keep_ours_then_theirs() -> None:
    base = "import sys\nimport os\n\nx = 1\n"
    ours = "import sys\nimport os\nimport zlib\n\nx = 1\n"
    theirs = "import sys\nimport os\nimport abc\n\nx = 1\n"
    check("python", base, ours, theirs, "import sys\nimport os\nimport zlib\nimport abc\n\nx = 1\n")


def test_java_imports_sorted() -> None:
    head = "package p;\n\nimport a.A;\n"
    tail = "import z.Z;\n\nclass C {}\n"
    got = check(
        "java",
        head + tail,
        head + "import m.M;\n" + tail,
        head + "import c.C;\n" + tail,
        head + "import c.C;\nimport m.M;\n" + tail,
    )
    assert got.added == (1, 1)


def test_javascript_imports_sorted() -> None:
    head = 'import a from "a";\n'
    tail = 'import z from "z";\n\nexport default a + z;\n'
    check(
        "javascript",
        head + tail,
        head + 'import { m } from "m";\n' + tail,
        head + 'import c from "c";\n' + tail,
        head + 'import c from "c";\nimport { m } from "m";\n' + tail,
    )


def test_typescript_imports_and_same_source_twice() -> None:
    head = 'import { a } from "./a";\n'
    tail = 'import { z } from "./z";\n\nexport const x: number = a + z;\n'
    check(
        "typescript",
        head + tail,
        head + 'import type { M } from "./m";\n' + tail,
        head + 'import { c } from "./c";\n' + tail,
        head + 'import { c } from "./c";\nimport type { M } from "./m";\n' + tail,
    )
    # the same module imported differently by both sides: one key, two texts -> a conflict
    answer, _ = merge(
        "typescript",
        head + tail,
        head + 'import { m } from "./m";\n' + tail,
        head + 'import { n } from "./m";\n' + tail,
    )
    assert answer is None


def test_csharp_usings() -> None:
    head = "using System;\n"
    tail = "using Zed;\n\nnamespace N { class C {} }\n"
    check(
        "csharp",
        head + tail,
        head + "using System.Linq;\n" + tail,
        head + "using System.IO;\n" + tail,
        head + "using System.IO;\nusing System.Linq;\n" + tail,
    )


def test_go_imports() -> None:
    head = 'package main\n\nimport (\n\t"fmt"\n'
    tail = '\t"strings"\n)\n\nfunc main() { fmt.Println(strings.ToUpper("x")) }\n'
    check(
        "go",
        head + tail,
        head + '\t"os"\n' + tail,
        head + '\t"io"\n' + tail,
        head + '\t"io"\n\t"os"\n' + tail,
    )


# --------------------------------------------------------------------------- class members

JAVA_BASE = """class Foo {
  private int a;

  void first() {
    a = 1;
  }
}
"""


def test_java_methods_both_added_keep_formatting() -> None:
    ours = JAVA_BASE.replace("  }\n}", "  }\n\n  void second() {\n    a = 2;\n  }\n}")
    theirs = JAVA_BASE.replace("  }\n}", "  }\n\n  int third(int x) {\n    return x;\n  }\n}")
    got = check(
        "java",
        JAVA_BASE,
        ours,
        theirs,
        JAVA_BASE.replace(
            "  }\n}",
            "  }\n\n  void second() {\n    a = 2;\n  }\n\n"
            "  int third(int x) {\n    return x;\n  }\n}",
        ),
    )
    assert got.parent == "class Foo"
    assert (
        got.explanation
        == "kept both: merged as members of class Foo (1 added by ours, 1 by theirs)"
    )


def test_java_overload_added_by_both_sides_differently_is_kept() -> None:
    ours = JAVA_BASE.replace("  }\n}", "  }\n\n  void first(int x) {\n    a = x;\n  }\n}")
    theirs = JAVA_BASE.replace("  }\n}", "  }\n\n  void first(long x) {\n    a = 0;\n  }\n}")
    answer, text = merge("java", JAVA_BASE, ours, theirs)
    assert answer is not None and text is not None
    assert "first(int x)" in text and "first(long x)" in text


def test_java_signature_changed_on_both_sides_is_a_conflict() -> None:
    ours = JAVA_BASE.replace("void first()", "void first(int x)")
    theirs = JAVA_BASE.replace("void first()", "void first(long y)")
    assert merge("java", JAVA_BASE, ours, theirs)[0] is None


def test_python_methods_both_added() -> None:
    head = "class A:\n    def f(self):\n        pass\n"
    base = head + "\n\nx = A()\n"
    ours = head + "\n    def g(self):\n        return 1\n\n\nx = A()\n"
    theirs = head + "\n    @property\n    def h(self):\n        return 2\n\n\nx = A()\n"
    check(
        "python",
        base,
        ours,
        theirs,
        "class A:\n    def f(self):\n        pass\n\n    def g(self):\n        return 1\n\n"
        "    @property\n    def h(self):\n        return 2\n\n\nx = A()\n",
    )


def test_python_same_method_added_differently_is_a_conflict() -> None:
    base = "class A:\n    def f(self):\n        pass\n"
    ours = base + "\n    def g(self):\n        return 1\n"
    theirs = base + "\n    def g(self, x):\n        return x\n"
    assert merge("python", base, ours, theirs)[0] is None


def test_typescript_class_members_with_decorators() -> None:
    base = "export class C {\n  a = 1;\n\n  m(): void {}\n}\n"
    ours = "export class C {\n  a = 1;\n  @Input() b: string;\n\n  m(): void {}\n}\n"
    theirs = "export class C {\n  a = 1;\n  private c = 3;\n\n  m(): void {}\n}\n"
    check(
        "typescript",
        base,
        ours,
        theirs,
        "export class C {\n  a = 1;\n  @Input() b: string;\n  private c = 3;\n\n"
        "  m(): void {}\n}\n",
    )


def test_javascript_class_methods() -> None:
    base = "class C {\n  a() {\n    return 1;\n  }\n}\n"
    ours = "class C {\n  a() {\n    return 1;\n  }\n\n  b() {\n    return 2;\n  }\n}\n"
    theirs = "class C {\n  a() {\n    return 1;\n  }\n\n  get c() {\n    return 3;\n  }\n}\n"
    check(
        "javascript",
        base,
        ours,
        theirs,
        "class C {\n  a() {\n    return 1;\n  }\n\n  b() {\n    return 2;\n  }\n\n"
        "  get c() {\n    return 3;\n  }\n}\n",
    )


def test_csharp_members_with_doc_comments() -> None:
    base = (
        "namespace N\n{\n    public class C\n    {\n        public int A { get; set; }\n    }\n}\n"
    )
    ours = base.replace(
        "        public int A { get; set; }\n",
        "        public int A { get; set; }\n\n        /// <summary>B.</summary>\n"
        "        public int B { get; set; }\n",
    )
    theirs = base.replace(
        "        public int A { get; set; }\n",
        "        public int A { get; set; }\n\n        public void M(int x) { }\n",
    )
    got = check(
        "csharp",
        base,
        ours,
        theirs,
        base.replace(
            "        public int A { get; set; }\n",
            "        public int A { get; set; }\n\n        /// <summary>B.</summary>\n"
            "        public int B { get; set; }\n\n        public void M(int x) { }\n",
        ),
    )
    assert got.parent == "class C"


def test_go_struct_fields_and_functions() -> None:
    base = "package p\n\ntype S struct {\n\tA int\n\tZ int\n}\n"
    check(
        "go",
        base,
        base.replace("\tA int\n", "\tA int\n\tB string\n"),
        base.replace("\tA int\n", "\tA int\n\tC []byte\n"),
        base.replace("\tA int\n", "\tA int\n\tB string\n\tC []byte\n"),
    )
    base = "package p\n\nfunc a() {}\n"
    check(
        "go",
        base,
        base + "\nfunc b() {}\n",
        base + "\nfunc (s *S) c() {}\n",
        base + "\nfunc b() {}\n\nfunc (s *S) c() {}\n",
    )


# --------------------------------------------------------------------------- enums, entries


def test_java_enum_constants_commas() -> None:
    base = "enum Color {\n  RED,\n  GREEN\n}\n"
    got = check(
        "java",
        base,
        "enum Color {\n  RED,\n  GREEN,\n  BLUE\n}\n",
        "enum Color {\n  RED,\n  GREEN,\n  BLACK\n}\n",
        "enum Color {\n  RED,\n  GREEN,\n  BLUE,\n  BLACK\n}\n",
    )
    assert got.parent == "enum Color"


def test_typescript_and_csharp_enums() -> None:
    base = "enum E {\n  A = 1,\n  B = 2,\n}\n"
    check(
        "typescript",
        base,
        "enum E {\n  A = 1,\n  B = 2,\n  C = 3,\n}\n",
        "enum E {\n  A = 1,\n  B = 2,\n  D = 4,\n}\n",
        "enum E {\n  A = 1,\n  B = 2,\n  C = 3,\n  D = 4,\n}\n",
    )
    base = "enum E\n{\n    A,\n    B\n}\n"
    check(
        "csharp",
        base,
        "enum E\n{\n    A,\n    B,\n    C\n}\n",
        "enum E\n{\n    A,\n    B,\n    D\n}\n",
        "enum E\n{\n    A,\n    B,\n    C,\n    D\n}\n",
    )


def test_python_dict_entries_commas() -> None:
    base = 'd = {\n    "a": 1,\n    "b": 2\n}\n'
    check(
        "python",
        base,
        'd = {\n    "a": 1,\n    "b": 2,\n    "c": 3\n}\n',
        'd = {\n    "a": 1,\n    "b": 2,\n    "d": 4\n}\n',
        'd = {\n    "a": 1,\n    "b": 2,\n    "c": 3,\n    "d": 4\n}\n',
    )


def test_javascript_object_entries_trailing_comma_style() -> None:
    base = "const o = {\n  a: 1,\n  z: 26,\n};\n"
    check(
        "javascript",
        base,
        "const o = {\n  a: 1,\n  m: 13,\n  z: 26,\n};\n",
        "const o = {\n  a: 1,\n  b: 2,\n  z: 26,\n};\n",
        "const o = {\n  a: 1,\n  b: 2,\n  m: 13,\n  z: 26,\n};\n",
    )


def test_object_key_changed_differently_is_a_conflict() -> None:
    base = "const o = {\n  a: 1,\n  b: 2,\n};\n"
    answer, _ = merge(
        "javascript", base, base.replace("b: 2", "b: 3"), base.replace("b: 2", "b: 4")
    )
    assert answer is None


def test_go_keyed_literal() -> None:
    base = 'var m = map[string]int{\n\t"a": 1,\n}\n'
    check(
        "go",
        "package p\n\n" + base,
        "package p\n\n" + base.replace("}", '\t"b": 2,\n}'),
        "package p\n\n" + base.replace("}", '\t"c": 3,\n}'),
        "package p\n\n" + base.replace("}", '\t"b": 2,\n\t"c": 3,\n}'),
    )


def test_python_keyword_arguments() -> None:
    base = "setup(\n    name='x',\n)\n"
    check(
        "python",
        base,
        "setup(\n    name='x',\n    version='1',\n)\n",
        "setup(\n    name='x',\n    license='MIT',\n)\n",
        "setup(\n    name='x',\n    version='1',\n    license='MIT',\n)\n",
    )


# --------------------------------------------------------------------------- annotations


def test_java_annotations() -> None:
    base = "class C {\n  @Deprecated\n  public void m() {}\n}\n"
    got = check(
        "java",
        base,
        base.replace("  @Deprecated\n", "  @Deprecated\n  @Override\n"),
        base.replace("  @Deprecated\n", '  @Deprecated\n  @SuppressWarnings("x")\n'),
        base.replace("  @Deprecated\n", '  @Deprecated\n  @Override\n  @SuppressWarnings("x")\n'),
    )
    assert got.parent == "annotations of m"


def test_python_decorators() -> None:
    base = "@a\ndef f():\n    pass\n"
    check(
        "python",
        base,
        "@a\n@b\ndef f():\n    pass\n",
        "@a\n@c\ndef f():\n    pass\n",
        "@a\n@b\n@c\ndef f():\n    pass\n",
    )


def test_csharp_attributes() -> None:
    base = "class C\n{\n    [A]\n    public void M() { }\n}\n"
    check(
        "csharp",
        base,
        base.replace("    [A]\n", "    [A]\n    [B]\n"),
        base.replace("    [A]\n", "    [A]\n    [C(1)]\n"),
        base.replace("    [A]\n", "    [A]\n    [B]\n    [C(1)]\n"),
    )


# --------------------------------------------------------------------------- deletions, edits


def test_delete_one_member_edit_its_sibling() -> None:
    base = "class C {\n  int a() { return 1; }\n  int b() { return 2; }\n}\n"
    ours = "class C {\n  int b() { return 2; }\n}\n"  # deletes a
    theirs = "class C {\n  int a() { return 1; }\n  int b() { return 20; }\n}\n"  # edits b
    got = check("java", base, ours, theirs, "class C {\n  int b() { return 20; }\n}\n")
    assert got.removed == (1, 0)


def test_delete_what_the_other_side_changed_is_a_conflict() -> None:
    base = "class C {\n  int a() { return 1; }\n  int b() { return 2; }\n}\n"
    ours = "class C {\n  int b() { return 3; }\n}\n"
    theirs = "class C {\n  int a() { return 10; }\n  int b() { return 2; }\n}\n"
    assert merge("java", base, ours, theirs)[0] is None


def test_python_delete_and_edit_sibling_entries() -> None:
    base = 'd = {\n    "a": 1,\n    "b": 2,\n    "c": 3,\n}\n'
    ours = 'd = {\n    "a": 1,\n    "c": 3,\n}\n'
    theirs = 'd = {\n    "a": 1,\n    "b": 2,\n    "c": 30,\n}\n'
    check("python", base, ours, theirs, 'd = {\n    "a": 1,\n    "c": 30,\n}\n')


def test_deleted_import_still_used_is_not_deleted() -> None:
    def files(body: str) -> tuple[str, str, str]:
        imports = ("List;\nimport java.util.Map;\n", "List;\nimport java.util.Queue;\n")
        base, ours = (f"import java.util.{i}\nclass C {{ {body} }}\n" for i in imports)
        theirs = base.replace("Map;\n", "Map;\nimport java.util.Set;\n")
        return base, ours, theirs

    # ours replaces Map by Queue, theirs adds Set after Map: Set follows Queue
    base, ours, theirs = files("List<String> a;")
    got = check(
        "java", base, ours, theirs, ours.replace("Queue;\n", "Queue;\nimport java.util.Set;\n")
    )
    assert got.removed == (1, 0) and got.added == (1, 1)
    # ... unless the file still uses Map
    base, ours, theirs = files("Map<String, String> a;")
    assert merge("java", base, ours, theirs)[0] is None


def test_replaced_on_one_side_deleted_on_the_other_is_a_conflict() -> None:
    base = "import a.Old;\nimport b.B;\n\nclass C {}\n"
    ours = "import a.New;\nimport b.B;\n\nclass C {}\n"  # Old replaced by New
    theirs = "import b.B;\nimport c.D;\n\nclass C {}\n"  # Old deleted
    assert merge("java", base, ours, theirs)[0] is None


# --------------------------------------------------------------------------- abstentions, limits


def test_whole_file_outside_the_region_is_untouched() -> None:
    head = "# header\r\nimport os\r\n"
    tail = "import sys\r\n\r\n\r\ndef main():\r\n    return os, sys  # keep\r\n"
    answer, text = merge(
        "python", head + tail, head + "import re\r\n" + tail, head + "import json\r\n" + tail
    )
    assert answer is not None and text is not None
    assert all(line.endswith("\r\n") for line in answer.lines)
    assert text.startswith(head) and text.endswith(tail)
    assert text == head + "import re\r\nimport json\r\n" + tail


def test_parse_error_in_the_region_abstains() -> None:
    base = "class C {\n  void a() {}\n}\n"
    ours = "class C {\n  void a() {}\n  void b( {}\n}\n"
    theirs = "class C {\n  void a() {}\n  void c() {}\n}\n"
    assert merge("java", base, ours, theirs)[0] is None


def test_unsupported_language_abstains() -> None:
    conflict = Conflict(("a\n",), ("b\n",), ("c\n",))
    assert structured_merge(Hunk(conflict, "fortran")) is None
    assert structured_merge(Hunk(conflict, None)) is None


def test_time_and_size_limits_abstain() -> None:
    base = "import os\nimport sys\n"
    ours = "import os\nimport re\nimport sys\n"
    theirs = "import os\nimport abc\nimport sys\n"
    assert merge("python", base, ours, theirs)[0] is not None
    assert merge("python", base, ours, theirs, max_seconds=0.0)[0] is None
    assert merge("python", base, ours, theirs, max_bytes=10)[0] is None


def test_ordered_statements_are_not_merged() -> None:
    base = "def f():\n    a()\n    z()\n"
    ours = "def f():\n    a()\n    b()\n    z()\n"
    theirs = "def f():\n    a()\n    c()\n    z()\n"
    assert merge("python", base, ours, theirs)[0] is None


def test_hunk_without_file_context() -> None:
    conflict = Conflict((), ("import re\n",), ("import json\n",))
    hunk = Hunk(conflict, "python", before=("import os\n",), after=("import sys\n", "\n"))
    answer = structured_merge(hunk)
    assert answer is not None
    assert answer.lines == ("import re\n", "import json\n")


# --------------------------------------------------------------------------- real conflicts


@pytest.mark.skipif(not DATA.is_dir(), reason="no shared merge data")
def test_real_conflicts_match_the_human_resolution_mostly() -> None:
    from splice.data.dataset import iter_records
    from splice.data.evaluation import located_hunks

    start = time.monotonic()
    answered = right = 0
    for record in iter_records(DATA, split="val", limit=300, per_repo_limit=15):
        for report, truth in located_hunks(record):
            answer = structured_merge(report.hunk)
            if answer is None:
                continue
            answered += 1
            right += text_key("".join(answer.lines)) == text_key("".join(truth))
    print(f"structured merge on real conflicts: {answered} answered, {right} right")
    assert answered >= 40
    assert right / answered >= 0.5
    assert time.monotonic() - start < 60


def test_through_the_pipeline_on_a_marked_file() -> None:
    """The stage answers hunks of a file with diff3 markers (the FileContext of
    ``merge_marked``) like those of the driver."""
    from splice.resolver.pipeline import merge_file, merge_marked
    from splice.resolver.resolvers import Resolution, Resolver, Suggestion

    class Structured(Resolver):
        name = "structured"

        def resolve(self, hunk: Hunk) -> Resolution:
            found = structured_merge(hunk)
            if found is None:
                return Resolution(None)
            answer = Suggestion(found.lines, 1.0, found.explanation, self.name)
            return Resolution(answer, (answer,))

    base = "import os\nimport sys\n\nx = 1\n"
    ours = "import os\nimport re\nimport sys\n\nx = 2\n"
    theirs = "import os\nimport abc\nimport sys\n\nx = 1\n"
    marked = merge_file(base, ours, theirs, None, style="diff3", lang="python").text
    assert "<<<<<<<" in marked
    done = merge_marked(marked, Structured(), lang="python")
    assert done.clean
    assert done.text == "import os\nimport re\nimport abc\nimport sys\n\nx = 2\n"
