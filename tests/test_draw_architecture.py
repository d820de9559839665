"""scripts/draw_architecture.py: the diagram is derived from the built model and the script runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "draw_architecture.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("draw_architecture", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    from training.resunet import ResUNet_CMB

    return ResUNet_CMB({"imagesize": 32, "dropval": 0.3})


def test_graph_has_one_block_per_layer_of_the_model(script, model):
    graph = script.model_graph(model)
    kinds = [type(layer).__name__ for layer in model.layers]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D" and layer.kernel_size == (5, 5)]
    assert convs
    blocks = list(graph.blocks.values())
    assert [b.filters for b in blocks if b.kind == "conv"] == [layer.filters for layer in convs]
    assert sum(b.kind == "add" for b in blocks) == kinds.count("Add")
    assert sum(b.kind == "concat" for b in blocks) == kinds.count("Concatenate")
    assert sum(b.kind == "input" for b in blocks) == len(model.inputs)
    # Every addition has exactly one shortcut (residual edge) and one main input.
    for key, block in graph.blocks.items():
        if block.kind == "add":
            into = [e.kind for e in graph.edges if e.dst == key]
            assert sorted(into) == ["main", "residual"], key
    # Long skips into the decoder's concatenations: R3 → after the bridge, R2's first block → R6.
    assert sum(e.kind == "skip" for e in graph.edges) == 2
    # Two down-sampling and two up-sampling convolution blocks make the U; the heads end in linear blocks.
    conv = [b for b in blocks if b.kind == "conv"]
    assert sum(b.stride == 2 for b in conv) == 2 and sum(b.up for b in conv) == 2
    assert sorted(b.output for b in conv if b.output) == sorted(model.output_names)
    assert all(b.activation == "linear" and b.filters == 1 for b in conv if b.output)
    assert min(b.size for b in blocks) == 32 // 4
    assert graph.params == model.count_params()


def test_script_writes_the_png(script, tmp_path, capsys):
    out = tmp_path / "arch.png"
    assert script.main(["--output", str(out), "--imagesize", "32"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert str(out) in capsys.readouterr().out
    assert script.main(["--output", str(out), "--imagesize", "30"]) == 2  # not a multiple of 4


def test_shipped_diagram_exists():
    assert (REPO_ROOT / "images" / "ResUNet-CMB_arch.png").is_file()
