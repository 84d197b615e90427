"""mailstorm: find reply-all storms and fan-out amplification in mail-server logs."""

__version__ = "0.1.0"
