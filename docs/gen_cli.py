"""Generate docs/cli.md from the click command tree, so the CLI reference is the CLI.

    python docs/gen_cli.py            # rewrite docs/cli.md
    python docs/gen_cli.py --check    # exit 1 when docs/cli.md is out of date

tests/docs checks that docs/cli.md equals what this script produces."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from gitops.cli import main  # noqa: E402

OUT = ROOT / "docs" / "cli.md"
HEADER = """# CLI reference

Generated from the command tree by `python docs/gen_cli.py`; do not edit by hand (a test
compares this file with the script's output). Every command also answers `--help`.
"""


def walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Depth-first: the command, then its subcommands in name order."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], (*path, name))


def _usage(cmd: click.Command, path: tuple[str, ...]) -> str:
    pieces = cmd.collect_usage_pieces(click.Context(cmd, info_name=path[-1]))
    return " ".join([*path, *pieces])


def _default(param: click.Option) -> str:
    """The default worth showing: none for flags, counters and unset options."""
    value = param.default
    if param.is_flag or param.count or param.show_default is False:
        return ""
    if value is None or value in ("", ()) or type(value).__name__ == "Sentinel":  # click's UNSET
        return ""
    return f"`{value}`"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a `|` would end the cell, even in code."""
    return text.replace("|", "\\|")


def _option_row(param: click.Option) -> str:
    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    meta = ""
    if not param.is_flag and not param.count:
        meta = f" `{_cell(param.metavar or param.type.name.upper())}`"
        if isinstance(param.type, click.Choice):
            meta = f" `{_cell('|'.join(str(c) for c in param.type.choices))}`"
    help_text = _cell(" ".join((param.help or "").split()))
    extra = []
    if param.multiple and "repeatable" not in help_text:
        extra.append("repeatable")
    if param.required:
        extra.append("required")
    envvar = param.envvar if isinstance(param.envvar, str) else None
    if envvar:
        extra.append(f"env `{envvar}`")
    if extra:
        help_text += f" ({', '.join(extra)})"
    return f"| {names}{meta} | {_default(param)} | {help_text} |"


def render() -> str:
    parts = [HEADER]
    for path, cmd in walk(main, ("gitops",)):
        title = " ".join(path)
        parts.append(f"\n## {title}\n")
        parts.append(f"```text\n{_usage(cmd, path)}\n```\n")
        if cmd.help:
            parts.append("\n" + inspect.cleandoc(cmd.help).replace("\b\n", "") + "\n")
        args = [p for p in cmd.params if isinstance(p, click.Argument)]
        if args:
            parts.append("\nArguments: " + ", ".join(f"`{a.human_readable_name}`" for a in args) + "\n")
        options = [p for p in cmd.params if isinstance(p, click.Option)]
        if options:
            parts.append("\n| option | default | description |\n|---|---|---|\n")
            parts.append("\n".join(_option_row(o) for o in options) + "\n")
        if isinstance(cmd, click.Group):
            subs = ", ".join(f"[`{name}`](#{'-'.join((*path, name))})" for name in sorted(cmd.commands))
            parts.append(f"\nCommands: {subs}\n")
    return "".join(parts)


def run(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
