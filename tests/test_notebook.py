"""The example notebook trained_networks/example_evaluate_results.ipynb: clean in the repository, and executable
headless (nbclient) against the session's tiny network and a small pipeline data set."""

from __future__ import annotations

from pathlib import Path

import nbformat
from evaluation_helpers import eval_data, tiny_network

NOTEBOOK = Path(__file__).resolve().parent.parent / "trained_networks" / "example_evaluate_results.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    source = "\n".join(cell.source for cell in nb.cells)
    for name in ("RESUNET_NETWORK_DIR", "RESUNET_EXAMPLE_DATA", "ev.load_network", "ev.predict", "ev.compare_fields"):
        assert name in source


def test_notebook_executes_headless(tmp_path_factory, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("RESUNET_NETWORK_DIR", str(tiny_network(tmp_path_factory)))
    monkeypatch.setenv("RESUNET_EXAMPLE_DATA", str(eval_data(tmp_path_factory)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 3, "map comparison, r_L and spectra figures"
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "mean r_L" in text and "QE rec_kappa" in text and "network" in text
    # The file on disk is untouched: executing never saves outputs into the repository.
    assert all(not cell.outputs for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code")

