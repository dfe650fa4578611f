"""Sphinx configuration of the salt-nats documentation (MyST Markdown pages)."""

from __future__ import annotations

import sys
from pathlib import Path

# Import the package from this checkout, so the version and the autodoc pages match
# the working tree even without an install.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from salt_nats import __version__  # noqa: E402

project = "salt-nats"
author = "salt-nats contributors"
copyright = "salt-nats contributors"
version = __version__
release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_tools"]

# Give headings up to level 3 anchors, so that pages can link to sections with
# `page.md#section`.
myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]

# Keep the member order of the source file in autodoc output.
autodoc_member_order = "bysource"

html_theme = "alabaster"
html_title = f"salt-nats {release}"
