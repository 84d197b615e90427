"""mailstorm: find reply-all storms and fan-out amplification in mail-server logs."""

# The one place the version is written: pyproject.toml reads it from here (hatch's dynamic
# version), `mailstorm --version` prints it, and CHANGELOG.md's newest release names it.
__version__ = "0.1.0"
