"""Read config/deploy/Procfile as Procfile runners (honcho, foreman, Heroku) do: `name: command` lines."""

import re
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent / "Procfile"
_ENTRY = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def procfile_entries(path: Path = PROCFILE) -> dict[str, str]:
    """Return {process name: shell command}; comments and blank lines are not entries."""
    entries = {}
    for line in path.read_text().splitlines():
        match = _ENTRY.match(line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries
