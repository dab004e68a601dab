"""``python -m bench [--quick] [--only METRIC ...] [--reps N] [--out FILE]``."""

from __future__ import annotations

from .runner import main

if __name__ == "__main__":
    main()
