"""The docs cannot rot: docs/cli.md is what docs/gen_cli.py makes of the CLI now, every
`gitops` command in the docs names real subcommands and options, and every shell block
not marked `<!-- doc-test: skip REASON -->` is run, one shell per document in document
order, against a real `gitops up` (started in the background on free ports) when the
document starts one."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitops.cli import main
from tests.docs.mdcommands import SHELL_LANGS, Block, Command, blocks, check_invocation, commands, invocations

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "examples").rglob("*.md")],
)
MARKERS = ("", "skip", "file", "with")
LINKED = ("examples", "charts", "docs", "policies", "bench")  # what doc commands read, by relative path
UP_TIMEOUT = 120
DOC_TIMEOUT = 240


def _all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc, ROOT)]


def _runnable_docs() -> list[Path]:
    return [
        doc.relative_to(ROOT)
        for doc in DOCS
        if any(b.lang in SHELL_LANGS and b.marker == "" for b in blocks(doc, ROOT))
    ]


def _guests(doc: Path) -> list[Block]:
    """Blocks of other docs marked `with DOC`: they run in DOC's shell, after its own."""
    return [b for b in _all_blocks() if b.marker == "with" and b.marker_arg == str(doc)]


def test_cli_reference_is_generated_from_the_cli() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    gen_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_cli)
    assert (ROOT / "docs" / "cli.md").read_text() == gen_cli.render(), (
        "docs/cli.md is out of date: run python docs/gen_cli.py"
    )


def test_every_shell_block_is_run_or_says_why_not() -> None:
    problems = []
    for b in _all_blocks():
        if b.marker not in MARKERS:
            problems.append(f"{b.where}: unknown marker doc-test: {b.marker}")
        elif b.marker == "skip" and not b.marker_arg:
            problems.append(f"{b.where}: doc-test: skip needs a reason")
        elif b.marker == "file" and not b.marker_arg:
            problems.append(f"{b.where}: doc-test: file needs a path")
        elif b.marker == "with" and Path(b.marker_arg) not in _runnable_docs():
            problems.append(f"{b.where}: doc-test: with {b.marker_arg}: not a document with commands the test runs")
        elif b.lang in SHELL_LANGS:
            problems += [f"{c.where}: heredocs are not supported: {c.text}" for c in commands(b) if "<<" in c.text]
    assert not problems, "\n".join(problems)


def test_doc_commands_name_real_subcommands_and_options() -> None:
    checked, problems = 0, []
    for b in _all_blocks():
        if b.lang not in SHELL_LANGS:
            continue
        for c in commands(b):
            for args in invocations(c.text):
                checked += 1
                why = check_invocation(main, args)
                if why:
                    problems.append(f"{c.where}: {why}\n    {c.text}")
    assert not problems, "\n".join(problems)
    assert checked >= 30, f"only {checked} gitops commands found in the docs"


def test_relative_links_resolve() -> None:
    """Links between docs, examples and code point at files that exist (anchors aside)."""
    problems = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            if path.is_relative_to(ROOT) and not path.exists():
                problems.append(f"{doc.relative_to(ROOT)}: broken link {target}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("gitops app lst", "has no command 'lst'"),
        ("gitops up --demo --no-such-flag", "has no option --no-such-flag"),
        ("FOO=1 .venv/bin/gitops app sync demo -x", "has no option -x"),
        ("echo $(gitops policy test)", "needs 1 argument(s)"),
        ("gitops app get a b", "takes 1 argument(s)"),
        ("gitops app", "needs a command"),
    ],
)
def test_the_check_catches_what_the_cli_does_not_have(command: str, problem: str) -> None:
    (args,) = invocations(command)
    why = check_invocation(main, args)
    assert why is not None and problem in why, why


@dataclass
class DocRun:
    proc: subprocess.Popen[bytes]
    log: Path
    deadline: float


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, DocRun]]:
    """Every runnable document's script, all started at once: they are independent (own
    directory, own ports) and mostly wait on rollouts, so together they take about as
    long as the longest."""
    runs: dict[Path, DocRun] = {}
    for doc in _runnable_docs():
        tmp = tmp_path_factory.mktemp(doc.stem)
        work = tmp / "work"
        work.mkdir()
        for name in LINKED:
            (work / name).symlink_to(ROOT / name)
        own = [b for b in blocks(ROOT / doc, ROOT) if b.marker != "with"]
        (tmp / "doc.sh").write_text(_script([*own, *_guests(doc)], _free_port()))
        log = tmp / "output.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", str(tmp / "doc.sh")],
                cwd=work,
                env=_env(tmp),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        runs[doc] = DocRun(proc, log, time.monotonic() + DOC_TIMEOUT)
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGTERM)
            run.proc.wait(30)


@pytest.mark.parametrize("doc", _runnable_docs(), ids=str)
def test_doc_commands_run(doc: Path, doc_runs: dict[Path, DocRun]) -> None:
    run = doc_runs[doc]
    try:
        run.proc.wait(timeout=max(1.0, run.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(run.proc.pid, signal.SIGTERM)
        run.proc.wait(30)
        pytest.fail(f"{doc}: commands did not finish in {DOC_TIMEOUT}s\n{run.log.read_text()[-6000:]}")
    assert run.proc.returncode == 0, f"{doc}: a command failed\n{run.log.read_text()[-6000:]}"


def _script(doc_blocks: list[Block], port: int) -> str:
    """One bash script for a document: its files written, its commands run in order,
    each checked for the exit code the doc announces; `gitops up` runs in the background
    on free ports (the doc's :8080 becomes the port chosen here)."""
    lines = [
        "set -u",
        f"GITOPS_UP_TIMEOUT={UP_TIMEOUT}",
        "gitops_up_pid=",
        'stop_up() { if [ -n "$gitops_up_pid" ]; then kill "$gitops_up_pid" 2>/dev/null; '
        'wait "$gitops_up_pid"; gitops_up_pid=; fi; }',
        "trap stop_up EXIT",
        "gitops_up() {",
        "  stop_up",
        f'  gitops up "$@" --api-port 0 --port {port} > "$GITOPS_UP_LOG" 2>&1 &',
        "  gitops_up_pid=$!",
        "  for _ in $(seq $((GITOPS_UP_TIMEOUT * 4))); do",
        '    grep -q "^Press Ctrl-C" "$GITOPS_UP_LOG" && return 0',
        # exited? (a zombie until waited for)
        '    kill -0 "$gitops_up_pid" 2>/dev/null || break',
        '    grep -q "^State:.*Z" "/proc/$gitops_up_pid/status" && break',
        "    sleep 0.25",
        "  done",
        '  cat "$GITOPS_UP_LOG"; return 1',
        "}",
    ]
    for b in doc_blocks:
        if b.marker == "file":
            target = shlex.quote(b.marker_arg)
            lines.append(f"mkdir -p \"$(dirname {target})\" && printf '%s' {shlex.quote(b.text)} > {target}")
            continue
        if b.lang not in SHELL_LANGS or b.marker not in ("", "with"):
            continue
        for c in commands(b):
            lines += _run_line(c, port)
    return "\n".join(lines) + "\n"


def _run_line(c: Command, port: int) -> list[str]:
    text = c.text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("localhost:8080", f"localhost:{port}")
    words = text.split()
    if len(words) > 1 and Path(words[0]).name == "gitops" and words[1] == "up":
        text = "gitops_up " + " ".join(words[2:])
    where = shlex.quote(f"{c.where}: {c.text}")
    return [
        f"echo + {where}",
        text,
        f'rc=$?; if [ "$rc" != {c.expect} ]; then echo "FAILED (exit $rc, the doc says {c.expect}):" {where}; '
        '[ -n "$gitops_up_pid" ] && tail -n 40 "$GITOPS_UP_LOG"; exit 1; fi',
    ]


def _env(tmp: Path) -> dict[str, str]:
    """`gitops` and `python` on the PATH as the docs assume (this checkout, this venv)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, argv in (("gitops", f'"{sys.executable}" -m gitops.cli'), ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "GITOPS_"))}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT),
        GITOPS_UP_LOG=str(tmp / "gitops-up.log"),
        HOME=str(tmp),
        GIT_AUTHOR_NAME="docs test",
        GIT_AUTHOR_EMAIL="docs@example.com",
        GIT_COMMITTER_NAME="docs test",
        GIT_COMMITTER_EMAIL="docs@example.com",
    )
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
