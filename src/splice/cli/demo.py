"""``splice demo``: a real git repository with conflicting branches, merged with Splice's driver.

Builds a temporary repository with files in five languages, makes two branches that conflict in
each, installs the Splice merge driver there (``splice install``), runs ``git merge`` and shows,
file by file, which conflicts Splice resolved and which kept their markers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import click

# file -> (base, ours, theirs). Each pair of edits conflicts for git's line merge.
FILES: dict[str, tuple[str, str, str]] = {
    # Both sides added the rounding argument; ours also renamed the call (a superset of theirs).
    "billing.py": (
        'def price(amount):\n    return format_price(amount, "EUR")\n',
        'def price(amount):\n    return format_money(amount, "EUR", rounding=2)\n',
        'def price(amount):\n    return format_price(amount, "EUR", rounding=2)\n',
    ),
    # Theirs switched to the retrying call; ours did the same and passed a timeout too.
    "Service.java": (
        "class Service {\n    int run(Request r) {\n        return handler.handle(r);\n    }\n}\n",
        "class Service {\n"
        "    int run(Request r) {\n"
        "        return handler.handleWithRetry(r, TIMEOUT);\n"
        "    }\n"
        "}\n",
        "class Service {\n"
        "    int run(Request r) {\n"
        "        return handler.handleWithRetry(r);\n"
        "    }\n"
        "}\n",
    ),
    # A real disagreement: Splice must leave it to a human.
    "server.go": (
        "package server\n\nconst Timeout = 30\n",
        "package server\n\nconst Timeout = 60\n",
        "package server\n\nconst Timeout = 45\n",
    ),
    # Two different insertions at the same point: a token-level conflict.
    "api.ts": (
        "import { get } from './http';\n\nexport const load = () => get('/items');\n",
        "import { get, post } from './http';\n\nexport const load = () => get('/items');\n",
        "import { get, put } from './http';\n\nexport const load = () => get('/items');\n",
    ),
    # Edits on adjacent lines: the token merge combines them, but combinations are right only
    # about half the time on real data, so this stays a suggestion (below the 0.85 threshold).
    "Program.cs": (
        "class Program {\n"
        "    static int Main() {\n"
        "        var name = Config.Name;\n"
        "        var port = Config.Port;\n"
        "        return Start(name, port);\n"
        "    }\n"
        "}\n",
        "class Program {\n"
        "    static int Main() {\n"
        "        var name = Settings.Name;\n"
        "        var port = Config.Port;\n"
        "        return Start(name, port);\n"
        "    }\n"
        "}\n",
        "class Program {\n"
        "    static int Main() {\n"
        "        var name = Config.Name;\n"
        "        var port = Config.Port ?? 8080;\n"
        "        return Start(name, port);\n"
        "    }\n"
        "}\n",
    ),
}


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )


def _commit_all(repo: Path, contents: dict[str, str], message: str) -> None:
    for name, text in contents.items():
        (repo / name).write_text(text, newline="")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


def build_repository(repo: Path) -> None:
    """A repository whose branches ``ours`` (checked out) and ``theirs`` conflict in every file."""
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", "ours")
    _git(repo, "config", "user.name", "Splice Demo")
    _git(repo, "config", "user.email", "demo@splice.invalid")
    _commit_all(repo, {n: v[0] for n, v in FILES.items()}, "base")
    _git(repo, "branch", "theirs")
    _commit_all(repo, {n: v[1] for n, v in FILES.items()}, "our changes")
    _git(repo, "checkout", "-q", "theirs")
    _commit_all(repo, {n: v[2] for n, v in FILES.items()}, "their changes")
    _git(repo, "checkout", "-q", "ours")


def _env_with_splice() -> dict[str, str]:
    """The environment with this interpreter's scripts folder (holding ``splice``) on PATH."""
    env = dict(os.environ)
    scripts = {sysconfig.get_path("scripts"), str(Path(sys.argv[0]).resolve().parent)}
    env["PATH"] = os.pathsep.join([*sorted(scripts), env.get("PATH", "")])
    return env


def run_demo(workdir: Path | None = None, keep: bool = False) -> int:
    """Run the demo; returns 0 when it behaved as designed (some resolved, some left)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="splice-demo-"))
    repo = root / "repo"
    env = _env_with_splice()
    try:
        build_repository(repo)
        console.rule("[bold]Splice demo")
        console.print(f"repository: {repo}")
        install = subprocess.run(
            ["splice", "install"], cwd=repo, env=env, capture_output=True, text=True
        )
        console.print("[bold]$ splice install[/bold]\n" + install.stdout.strip())
        if install.returncode != 0:
            console.print(install.stderr)
            return 1
        console.print("[bold]$ git merge theirs[/bold]")
        merge = _git(repo, "merge", "--no-edit", "theirs", env=env)
        console.print((merge.stdout + merge.stderr).strip())
        unmerged = set(_git(repo, "diff", "--name-only", "--diff-filter=U").stdout.split())
        table = Table(title="Result per file")
        table.add_column("file")
        table.add_column("result")
        for name in FILES:
            text = (repo / name).read_text()
            left = text.count("\n<<<<<<< ") + text.startswith("<<<<<<< ")
            if name in unmerged:
                table.add_row(name, f"[red]{left} conflict(s) left for a human[/red]")
            else:
                table.add_row(name, "[green]resolved by Splice[/green]")
        console.print(table)
        for name in FILES:
            if name not in unmerged:
                console.print(f"[green]{name}[/green] as Splice merged it:")
                console.print(Text((repo / name).read_text().rstrip("\n") + "\n"))
        for name in sorted(unmerged):
            console.print(f"[red]{name}[/red] keeps git's markers:")
            console.print(Text((repo / name).read_text().rstrip("\n") + "\n"))
        resolved = len(FILES) - len(unmerged)
        console.print(
            f"[bold]{resolved} of {len(FILES)} files resolved; "
            f"{len(unmerged)} left with ordinary conflict markers.[/bold]"
        )
        return 0 if 0 < resolved < len(FILES) else 1
    finally:
        if keep or workdir:
            console.print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary repository and print its path.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False), help="Build it here.")
def demo_command(keep: bool, workdir: str | None) -> None:
    """Merge two conflicting branches of a fresh git repository with Splice's driver."""
    raise SystemExit(run_demo(Path(workdir) if workdir else None, keep=keep))
