"""``python -m ies.sweep.worker CONFIG_JSON``: train one run of a sweep, in its own process.

The sweep writes the run's whole configuration (``Config.to_dict()``) to ``CONFIG_JSON`` in the run's
folder; this reads it back with ``Config.from_dict`` and trains. An error ends the process with a
traceback on stderr (the sweep keeps its last lines) and exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import Config
from ..training import train


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ies.sweep.worker CONFIG_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0])
    cfg = Config.from_dict(json.loads(path.read_text()))
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
