"""Each example notebook runs top to bottom (nbclient) on the embedded runtime, offline model."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from nbflow.jupyter.display import MIME

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# Set in the test session for other tests' runtimes; the kernel must use its own home's.
DROPPED_ENV = ("NBFLOW_REDIS_URL", "NBFLOW_SECRET", "OPENAI_API_KEY", "OPENAI_BASE_URL")


@pytest.fixture(scope="module")
def embedded_home() -> Iterator[Path]:
    """A fresh nbflow home: the notebooks' kernels start its server and worker pool."""
    from nbflow.runtime import embedded, pool

    home = Path(tempfile.mkdtemp(prefix="nbf-nb-"))
    yield home
    pool.stop_pool(home)
    embedded.stop_server(home)
    shutil.rmtree(home, ignore_errors=True)


def execute(name: str, home: Path, workdir: Path) -> Any:
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(NBFLOW_HOME=str(home), JPY_SESSION_NAME=f"notebooks/{name}.ipynb")
    client = NotebookClient(
        book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute(env=env)
    return book


def outputs(book: Any, mime: str) -> list[Any]:
    return [
        out["data"][mime]
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if mime in out.get("data", {})
    ]


def printed(book: Any) -> str:
    """Everything the notebook's cells printed or showed as text."""
    texts = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "quickstart",
        "blog_post_agent",
        "ingest_site",
        "traces_as_dataframes",
        "tool_agent",
        "human_approval",
        "child_runs",
    ],
)
def test_notebook_runs_top_to_bottom(name: str, embedded_home: Path, tmp_path: Path) -> None:
    book = execute(name, embedded_home, tmp_path)
    runs = outputs(book, MIME)
    if name != "traces_as_dataframes":
        assert runs, "the notebook shows at least one run"
        assert all(r["status"] == "succeeded" for r in runs[-1:])
        assert outputs(book, "text/html")
    if name == "blog_post_agent":
        blog = next(r for r in runs if r["workflow"] == "blog_post")
        assert blog["snapshot"]["usage"]["llm_calls"] >= 5
        assert "## " in blog["snapshot"]["emitted_tail"]
        assert set(blog["snapshot"]["progress"]) == {"research", "outline", "write"}
    if name == "ingest_site":
        ingest = [r for r in runs if r["workflow"] == "ingest"]
        assert ingest[-1]["snapshot"]["usage"]["llm_calls"] == 100
    if name == "tool_agent":
        agent = [r for r in runs if r["workflow"] == "travel_agent"][-1]  # the finished view
        assert agent["snapshot"]["usage"]["llm_calls"] == 3  # tools asked for, answer, brief
        shown = "".join(
            "".join(out.get("text", "")) for cell in book.cells for out in cell.get("outputs", [])
        )
        # The tools ran on arguments the model took from the question; the answer cites them.
        assert "get_weather returned" in shown and '"USD":270.0' in shown
    if name == "human_approval":
        text = printed(book)
        assert "refused: input 'approve': 'yes please' is not of type 'boolean'" in text
        assert "refused: input 'copies': 0 is less than the minimum of 1" in text
        assert "'published to newsletter, 2 copies'" in text
        assert '"held for tomorrow\'s review"' in text
        publish = next(r for r in runs if r["workflow"] == "publish")
        assert publish["status"] == "succeeded" and publish["snapshot"]["wait"] is None
    if name == "child_runs":
        text = printed(book)
        assert "6 children: {'succeeded'}" in text
        kids = next(r for r in runs if r["workflow"] == "survey")["snapshot"]["children"]
        assert len(kids) == 6
        assert all(k["status"] == "succeeded" and k["total_tokens"] > 0 for k in kids)
        assert "'found': ['eels', 'herons'], 'missing': ['the kraken: ValueError']" in text
