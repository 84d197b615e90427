"""Where the built-in rules and report templates are.

In a wheel they are copied into ``detector/_builtin/`` (see pyproject.toml); in a source
checkout or an editable install they are the top-level ``rules/`` and
``reports/templates/`` folders. ``--rules DIR`` / ``--templates DIR`` override both.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _builtin(name: str, repo_relative: str) -> Path:
    packaged = resources.files("detector") / "_builtin" / name
    if packaged.is_dir():
        return Path(str(packaged))
    return _REPO_ROOT / repo_relative


def builtin_rules_dir() -> Path:
    """Folder of the rule files that ship with mailstorm."""
    return _builtin("rules", "rules")


def builtin_templates_dir() -> Path:
    """Folder of the report templates that ship with mailstorm."""
    return _builtin("templates", "reports/templates")
