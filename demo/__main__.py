"""Entry point of ``python -m demo`` (``make demo``)."""

from __future__ import annotations

import sys

from demo.story import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
