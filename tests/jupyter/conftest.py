"""An IPython shell with the extension loaded, for magics run in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbflow as nf


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance()
    sh.run_cell("%load_ext nbflow", store_history=False)
    sh.user_ns["nf"] = nf
    yield sh
    sh.reset(new_session=False)


def cell(sh: InteractiveShell, line: str, body: str) -> Any:
    """Run a cell magic as a notebook cell ``%%line`` with ``body`` would."""
    return sh.run_cell_magic(line.split()[0], " ".join(line.split()[1:]), body)
