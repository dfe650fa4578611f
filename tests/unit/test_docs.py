"""Tests that the documentation matches the code it describes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from salt_nats.config import options_reference

DOCS = Path(__file__).resolve().parents[2] / "docs"
CONFIGURATION_PAGE = DOCS / "configuration.md"
START_MARKER = "<!-- options-table:start -->"
END_MARKER = "<!-- options-table:end -->"


def test_options_table_matches_config():
    lines = CONFIGURATION_PAGE.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]

    assert len(starts) == 1, f"expected one line {START_MARKER!r} in {CONFIGURATION_PAGE}"
    assert len(ends) == 1, f"expected one line {END_MARKER!r} in {CONFIGURATION_PAGE}"
    assert starts[0] < ends[0], f"{END_MARKER!r} comes before {START_MARKER!r}"

    table = "".join(lines[starts[0] + 1 : ends[0]])
    assert table == options_reference(), (
        "the options table in docs/configuration.md differs from "
        "salt_nats.config.options_reference(); run `make docs-options` to regenerate it"
    )


def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-4000:]
