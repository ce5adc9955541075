"""Entry point: ``tlsearch``. User mistakes print one clear line and exit with code 2, no traceback."""

from __future__ import annotations

import re
import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from tlsearch import __version__
from tlsearch.cli.data_cmd import data_app
from tlsearch.cli.models_cmd import models_app
from tlsearch.cli.predict_cmd import export_cmd, predict_cmd
from tlsearch.cli.pretrain_cmd import pretrain_cmd
from tlsearch.cli.report_cmd import report_cmd
from tlsearch.cli.search_cmd import resume_cmd, run_cmd, status_cmd, validate_cmd
from tlsearch.cli.train_cmd import train_cmd
from tlsearch.errors import UserInputError


def _flags_show_no_type() -> None:
    """typer 0.29's rich help prints every flag with a value type, as if it took one (``--version <bool>``,
    ``--help <bool>``, ``--data <bool>``); a flag takes no value, and click's own help shows none for it.
    Options that take a value keep theirs (``--name <str>``)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_flag_aware", False):
        return

    def display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._flag_aware = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()
app = typer.Typer(
    name="tlsearch",
    help="Find the best transfer-learning strategy for ALIGNN materials-property models.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.command("train")(train_cmd)
app.command("validate")(validate_cmd)
app.command("run")(run_cmd)
app.command("resume")(resume_cmd)
app.command("status")(status_cmd)
app.command("report")(report_cmd)
app.command("pretrain")(pretrain_cmd)
app.command("predict")(predict_cmd)
app.command("export")(export_cmd)
err = Console(stderr=True)
try:  # typer >= 0.29 raises its bundled click's exceptions, not the installed click's
    from typer._click import exceptions as _typer_click
except ImportError:  # pragma: no cover - older typer uses the installed click
    _typer_click = click.exceptions
_USAGE = (click.exceptions.UsageError, _typer_click.UsageError)
_ABORT = (click.exceptions.Abort, typer.Abort)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tlsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """tlsearch: pre-train / fine-tune strategy search for ALIGNN on Ray Tune + Optuna."""


def main(argv: list[str] | None = None) -> int:
    try:
        rc = app(args=argv, prog_name="tlsearch", standalone_mode=False)
    except UserInputError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return _exit(exc.exit_code, argv)
    except _USAGE as exc:
        err.print(f"[bold red]error:[/] {escape(usage_line(exc))}", highlight=False, soft_wrap=True)
        return _exit(2, argv)
    except _ABORT:
        err.print("aborted")
        return _exit(130, argv)
    return _exit(rc if isinstance(rc, int) else 0, argv)


def usage_line(exc: Exception) -> str:
    """One line for a usage mistake: which command, what is wrong, what to do (click prints four lines, and a
    whole help screen for a missing command)."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "tlsearch"
    commands = ", ".join(ctx.command.list_commands(ctx)) if hasattr(getattr(ctx, "command", None),
                                                                     "list_commands") else ""
    message = exc.format_message().rstrip(".") if hasattr(exc, "format_message") else str(exc)
    if commands and message == "Missing command":
        return f"{path}: no command given; commands: {commands}; see '{path} --help'"
    if commands and "No such command" in message:
        return f"{path}: {message}; commands: {commands}; see '{path} --help'"
    usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), " ".join(ctx.command.collect_usage_pieces(ctx))) \
        if ctx is not None else ""
    return f"{path}: {message}; usage: {path} {usage}; see '{path} --help'"


def _exit(code: int, argv: list[str] | None) -> int:
    if argv is None:  # console-script use
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
