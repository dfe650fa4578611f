"""Regenerate the options table in docs/configuration.md from salt_nats.config.

The table sits between the lines ``<!-- options-table:start -->`` and
``<!-- options-table:end -->`` and is exactly the output of
``salt_nats.config.options_reference()``. ``tests/unit/test_docs.py`` fails when the
two differ. Run this script with ``make docs-options``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"
START_MARKER = "<!-- options-table:start -->"
END_MARKER = "<!-- options-table:end -->"

# salt_nats.config needs only the standard library, so the checkout is importable
# without an install.
sys.path.insert(0, str(ROOT))

from salt_nats.config import options_reference  # noqa: E402


def replace_table(page: str, table: str) -> str:
    """Return ``page`` with the text between the marker lines replaced by ``table``.

    Raises ValueError unless each marker appears exactly once, on a line of its own,
    with the start marker first.
    """
    lines = page.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(
            f"expected one line {START_MARKER!r} followed by one line {END_MARKER!r}, but "
            f"found {len(starts)} start and {len(ends)} end markers"
        )
    return "".join(lines[: starts[0] + 1]) + table + "".join(lines[ends[0] :])


def main() -> int:
    page = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    try:
        updated = replace_table(page, options_reference())
    except ValueError as exc:
        print(f"error: {CONFIGURATION_PAGE}: {exc}", file=sys.stderr)
        return 1

    if updated == page:
        print(f"{CONFIGURATION_PAGE.relative_to(ROOT)}: options table is up to date")
        return 0
    CONFIGURATION_PAGE.write_text(updated, encoding="utf-8")
    print(f"{CONFIGURATION_PAGE.relative_to(ROOT)}: options table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
