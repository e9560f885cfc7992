"""The shell commands of the Markdown docs, and a check of `gitops` invocations against the
click command tree.

Conventions (docs/README.md explains them to writers): every fenced ```sh / ```console
block is run by tests/docs unless the line just before its fence is a marker comment

    <!-- doc-test: skip REASON -->        not runnable here (REASON is required)
    <!-- doc-test: with DOC -->           run in DOC's shell, after DOC's own blocks (to
                                          reuse the `gitops up` DOC starts)
    <!-- doc-test: file PATH -->          (any block) the block is written to PATH first

In ```console blocks only lines starting with `$ ` are commands (the rest is output); in
```sh blocks every line is, `#` comments aside. A trailing `\\` continues a command. A
trailing comment `# exits N` says the command is expected to exit with N."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

SHELL_LANGS = ("sh", "console", "bash", "shell")
_MARKER = re.compile(r"<!--\s*doc-test:\s*(?P<kind>\w+)\s*(?P<arg>.*?)\s*-->")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)")
_EXPECT = re.compile(r"#.*\bexits? (?P<code>\d+)\b")
_SEPARATORS = {"&&", "||", "|", ";", "(", ")", "&"}


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the opening fence, 1-based
    lang: str
    marker: str  # "" (run), "skip" or "file"
    marker_arg: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Command:
    block: Block
    line: int
    text: str  # as the shell reads it (continuations joined)
    expect: int  # the exit code the doc announces (0 unless `# exits N`)

    @property
    def where(self) -> str:
        return f"{self.block.file}:{self.line}"


def blocks(path: Path, root: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, each with the marker just before it."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start, indent = i, len(fence["indent"])
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][indent:])
            i += 1
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.fullmatch(prev)
        out.append(
            Block(
                path.relative_to(root),
                start + 1,
                fence["lang"],
                marker["kind"] if marker else "",
                marker["arg"] if marker else "",
                "\n".join(body) + "\n",
            )
        )
        i += 1
    return out


def commands(block: Block) -> list[Command]:
    """The commands of a shell block."""
    out: list[Command] = []
    pending: list[str] = []
    first = 0
    for offset, raw in enumerate(block.text.splitlines()):
        line_no = block.line + 1 + offset
        if not pending:
            if block.lang == "console":
                if not raw.startswith("$ "):
                    continue
                raw = raw[2:]
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            first = line_no
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        text = " ".join(p.strip() for p in [*pending, raw])
        pending = []
        expect = _EXPECT.search(text)
        out.append(Command(block, first, text, int(expect["code"]) if expect else 0))
    return out


def invocations(command: str, program: str = "gitops") -> list[list[str]]:
    """The argument lists of every `program` invocation in a shell command line (also in
    pipelines, `&&` chains and `$(...)`), e.g. `.venv/bin/gitops app list` -> [["app", "list"]]."""
    lexer = shlex.shlex(command.replace("$(", " ( "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words = list(lexer)
    found: list[list[str]] = []
    current: list[str] | None = None
    start_of_command = True
    for word in words:
        if word in _SEPARATORS or set(word) <= set("&|;()"):
            current, start_of_command = None, True
            continue
        if start_of_command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
            continue  # VAR=value prefix
        if start_of_command:
            start_of_command = False
            if Path(word).name == program:
                current = []
                found.append(current)
            continue
        if current is not None:
            current.append(word)
    return found


def check_invocation(root: click.Command, args: list[str], program: str = "gitops") -> str | None:
    """None if click's tree has every subcommand and option `args` name, else why not."""
    cmd, path = root, [program]
    positional = 0
    i = 0
    wants_help = False
    while i < len(args):
        tok = args[i]
        if tok == "--":
            positional += len(args) - i - 1
            break
        if tok.startswith("--"):
            name, eq, _ = tok.partition("=")
            if name == "--help":
                wants_help = True
            else:
                opt = _option(cmd, name)
                if opt is None:
                    return f"`{' '.join(path)}` has no option {name} (has: {', '.join(_names(cmd))})"
                if _takes_value(opt) and not eq:
                    i += 1
        elif tok.startswith("-") and len(tok) > 1 and not tok[1].isdigit():
            for j in range(1, len(tok)):
                opt = _option(cmd, "-" + tok[j])
                if opt is None:
                    return f"`{' '.join(path)}` has no option -{tok[j]} (has: {', '.join(_names(cmd))})"
                if _takes_value(opt):
                    if j == len(tok) - 1:
                        i += 1
                    break
        elif isinstance(cmd, click.Group):
            sub = cmd.commands.get(tok)
            if sub is None:
                return f"`{' '.join(path)}` has no command {tok!r} (has: {', '.join(sorted(cmd.commands))})"
            cmd = sub
            path.append(tok)
        else:
            positional += 1
        i += 1
    if wants_help:
        return None
    if isinstance(cmd, click.Group):
        return f"`{' '.join(path)}` needs a command ({', '.join(sorted(cmd.commands))})"
    arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
    unlimited = any(a.nargs == -1 for a in arguments)
    most = sum(max(a.nargs, 0) for a in arguments)
    least = sum(max(a.nargs, 1) for a in arguments if a.required)
    if not unlimited and positional > most:
        return f"`{' '.join(path)}` takes {most} argument(s), the doc gives {positional}"
    if positional < least:
        return f"`{' '.join(path)}` needs {least} argument(s), the doc gives {positional}"
    return None


def _option(cmd: click.Command, name: str) -> click.Option | None:
    for p in cmd.params:
        if isinstance(p, click.Option) and name in (*p.opts, *p.secondary_opts):
            return p
    return None


def _names(cmd: click.Command) -> list[str]:
    return [n for p in cmd.params if isinstance(p, click.Option) for n in (*p.opts, *p.secondary_opts)]


def _takes_value(opt: click.Option) -> bool:
    return not (opt.is_flag or opt.count)
