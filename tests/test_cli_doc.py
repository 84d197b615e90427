"""docs/cli.md is generated from the commands' --help and must stay in step with them.

Regenerate after changing an option or a help text:
    MAILSTORM_UPDATE_DOCS=1 .venv/bin/pytest tests/test_cli_doc.py
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.testing import CliRunner

from detector.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):  # noqa: ANN202
    yield prefix
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


def render() -> str:
    parts = ["# mailstorm command reference\n",
             "Generated from `--help` by `tests/test_cli_doc.py`; do not edit by hand.\n"]
    for path in _commands(main):
        title = " ".join(("mailstorm", *path))
        text = CliRunner().invoke(main, [*path, "--help"], prog_name="mailstorm",
                                  terminal_width=88).output
        parts.append(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def test_cli_reference_is_up_to_date() -> None:
    expected = render()
    if os.environ.get("MAILSTORM_UPDATE_DOCS"):
        DOC.write_text(expected, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/cli.md is stale: run MAILSTORM_UPDATE_DOCS=1 pytest tests/test_cli_doc.py")
