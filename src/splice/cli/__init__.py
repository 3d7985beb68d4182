"""The ``splice`` command line: a click group over one module per command, each imported only
when it is run (or listed by ``--help``).

git starts ``splice driver`` once per conflicting file, so importing this module must stay cheap:
only click and the package version here.
"""

from __future__ import annotations

import click

from splice import __version__

#: Commands defined in other modules, as "module:attribute", imported only when they are run
#: (or listed by --help), so that ``splice driver`` never pays for the others.
LAZY_COMMANDS: dict[str, str] = {
    "driver": "splice.cli.driver:driver_command",
    "mergetool": "splice.cli.mergetool:mergetool_command",
    "resolve": "splice.cli.resolve:resolve_command",
    "install": "splice.cli.install:install_command",
    "uninstall": "splice.cli.install:uninstall_command",
    "languages": "splice.cli.languages:languages_command",
    "doctor": "splice.cli.doctor:doctor_command",
    "eval": "splice.cli.eval:eval_command",
    "demo": "splice.cli.demo:demo_command",
    "train": "splice.cli.train:train_command",
    "export-onnx": "splice.cli.export:export_command",
    "lm": "splice.cli.lm:lm_command",
    "export-lm": "splice.cli.lm:export_lm_command",
    "train-lm": "splice.cli.train_lm:train_lm_command",
    "train-lm-adapters": "splice.cli.train_lm:train_lm_adapters_command",
    "calibrate": "splice.cli.calibrate:calibrate_command",
    "lsp": "splice.cli.lsp:lsp_command",
    "merge-weights": "splice.cli.merge:merge_weights_command",
    "merge-adapters": "splice.cli.merge:merge_adapters_command",
    "merge-experts": "splice.cli.merge:merge_experts_command",
    "merge-layers": "splice.cli.merge:merge_layers_command",
    "ci": "splice.cli.ci:ci_command",
    "mine": "splice.cli.mine:mine_command",
}


class LazyGroup(click.Group):
    """A click group that imports the commands of :data:`LAZY_COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="splice")
def main() -> None:
    """Splice: resolve git merge conflicts."""
