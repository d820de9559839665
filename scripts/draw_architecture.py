#!/usr/bin/env python
"""Draw the ResUNet-CMB architecture diagram from the model definition: ``images/ResUNet-CMB_arch.png``.

The script builds the registered model (``training/resunet.py``) and walks its Keras graph, so the figure cannot
drift from the code. Each convolution block (Dropout → Conv2D 5×5 → activation → BatchNorm, with an UpSampling2D
first in "up" blocks) becomes one box with its number of filters under it; additions (⊕) and concatenations (C)
become circles. Boxes sit in rows by resolution (the U shape) and columns by depth in the graph; the three heads
get a lane each. Residual connections (shortcuts into an addition, labelled with the layers on the shortcut) are
drawn as orange arcs, long skip connections (into a concatenation) as dashed green arcs.

Usage::

    python scripts/draw_architecture.py                                  # -> images/ResUNet-CMB_arch.png
    python scripts/draw_architecture.py --output /tmp/arch.png --imagesize 32
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUTPUT = ROOT / "images" / "ResUNet-CMB_arch.png"
#: Short names of the layers that can sit on a shortcut path, for the arc labels.
_SHORTCUT_LABELS = {"UpSampling2D": "up×2", "BatchNormalization": "BN"}


@dataclasses.dataclass
class Block:
    """One node of the diagram.

    Attributes
    ----------
    key : str
        Name of the Keras layer that defines it (the convolution, addition, concatenation or input).
    kind : str
        ``"conv"``, ``"add"``, ``"concat"`` or ``"input"``.
    filters : int
        Output channels.
    size : int
        Output side in pixels.
    stride : int
        Convolution stride (2: down-sampling block).
    up : bool
        Convolution block that up-samples first.
    activation : str
        Activation of a convolution block (``"selu"``, ``"linear"``).
    output : str or None
        Model output produced by this block (head name), if any.
    depth, lane : int
        Column (longest path from the inputs) and head lane (0 for the shared trunk).
    """

    key: str
    kind: str
    filters: int
    size: int
    stride: int = 1
    up: bool = False
    activation: str = ""
    output: str | None = None
    depth: int = 0
    lane: int = 0


@dataclasses.dataclass
class Edge:
    """A connection between two blocks: ``"main"`` (data flow), ``"residual"`` (shortcut into ⊕) or ``"skip"``."""

    src: str
    dst: str
    kind: str
    label: str = ""


@dataclasses.dataclass
class Graph:
    """The diagram's blocks (in topological order) and edges, and facts about the model."""

    blocks: dict[str, Block]
    edges: list[Edge]
    name: str
    params: int
    imagesize: int
    outputs: list[str]


def _parents(layer: Any) -> list[Any]:
    return [node.operation for node in layer._inbound_nodes[0].parent_nodes]


def _is_block_conv(layer: Any) -> bool:
    return type(layer).__name__ == "Conv2D" and tuple(layer.kernel_size) != (1, 1)


def _side(layer: Any) -> int:
    return int(layer.output.shape[1])


def model_graph(model: Any) -> Graph:
    """Collapse a built functional Keras model into diagram blocks and edges.

    Parameters
    ----------
    model : keras.Model
        A functional model built from :func:`training.resunet.conv_block` / ``residual_block`` pieces.

    Returns
    -------
    Graph
    """
    layers = list(model.layers)
    children: dict[str, list[Any]] = {layer.name: [] for layer in layers}
    for layer in layers:
        for parent in _parents(layer):
            children[parent.name].append(layer)
    output_layers = {t._keras_history.operation.name: name for t, name in zip(model.outputs, model.output_names,
                                                                            strict=True)}

    # Which convolution block each layer belongs to (None: a block node itself or a shortcut layer).
    owner: dict[str, str] = {}
    for layer in layers:
        if _is_block_conv(layer):
            owner[layer.name] = layer.name
            # Forward: activation and batch norm after the convolution.
            nxt = layer
            while len(children[nxt.name]) == 1 and type(children[nxt.name][0]).__name__ in (
                "Activation",
                "BatchNormalization",
            ):
                nxt = children[nxt.name][0]
                owner[nxt.name] = layer.name
                if type(nxt).__name__ == "BatchNormalization":
                    break
            # Backward: dropout and up-sampling before it.
            prev = _parents(layer)
            while len(prev) == 1 and type(prev[0]).__name__ in ("Dropout", "UpSampling2D") and len(
                children[prev[0].name]
            ) == 1:
                owner[prev[0].name] = layer.name
                prev = _parents(prev[0])

    blocks: dict[str, Block] = {}
    resolved: dict[str, tuple[str, list[str]]] = {}  # layer → (block key, shortcut layers on the way)

    def block_of(layer: Any) -> tuple[str, list[str]]:
        if layer.name in resolved:
            return resolved[layer.name]
        if layer.name in owner:
            result = (owner[layer.name], [])
        elif layer.name in blocks:
            result = (layer.name, [])
        else:  # a shortcut layer: follow it back to a block
            (parent,) = _parents(layer)
            key, ops = block_of(parent)
            name = type(layer).__name__
            if name == "Conv2D":
                stride = layer.strides[0]
                label = f"{layer.kernel_size[0]}×{layer.kernel_size[1]} conv" + (f" /{stride}" if stride > 1 else "")
            else:
                label = _SHORTCUT_LABELS.get(name, name)
            result = (key, [*ops, label])
        resolved[layer.name] = result
        return result

    edges: list[Edge] = []
    for layer in layers:
        kind = {"InputLayer": "input", "Add": "add", "Concatenate": "concat"}.get(type(layer).__name__)
        if _is_block_conv(layer):
            kind = "conv"
        if kind is None:
            continue
        block = Block(layer.name, kind, int(layer.output.shape[-1]), _side(layer))
        if kind == "conv":
            inner = [lay for lay in layers if owner.get(lay.name) == layer.name]
            block.stride = int(layer.strides[0])
            block.up = any(type(lay).__name__ == "UpSampling2D" for lay in inner)
            acts = [lay.get_config()["activation"] for lay in inner if type(lay).__name__ == "Activation"]
            block.activation = acts[0] if acts else str(layer.get_config().get("activation", ""))
            block.size = _side(inner[-1])
            block.output = next((output_layers[lay.name] for lay in inner if lay.name in output_layers), None)
        blocks[layer.name] = block
        parents = [] if kind == "input" else [block_of(p) for p in _parents(layer)]
        if kind == "conv":
            # The block's first layer (dropout / up-sampling) decides its input.
            first = layer
            while _parents(first) and owner.get(_parents(first)[0].name) == layer.name:
                first = _parents(first)[0]
            parents = [block_of(p) for p in _parents(first)]
        for src, ops in parents:
            edges.append(Edge(src, layer.name, "residual" if ops else "main", ", ".join(ops)))

    # Depth: longest path from the inputs.
    incoming: dict[str, list[Edge]] = {k: [] for k in blocks}
    for e in edges:
        incoming[e.dst].append(e)
    for key, block in blocks.items():  # model.layers is topologically sorted
        block.depth = max((blocks[e.src].depth + 1 for e in incoming[key]), default=0)
    # Concatenations: inputs from far behind are long skips.
    for e in edges:
        if blocks[e.dst].kind == "concat" and e.kind == "main":
            if blocks[e.dst].depth - blocks[e.src].depth > 1:
                e.kind = "skip"
    # Lanes: blocks that lead to exactly one output belong to that output's head.
    outputs = list(model.output_names)
    reach: dict[str, set[str]] = {}
    for key in reversed(list(blocks)):
        block = blocks[key]
        got = {block.output} if block.output else set()
        for e in edges:
            if e.src == key:
                got |= reach.get(e.dst, set())
        reach[key] = got
    for key, block in blocks.items():
        if len(reach[key]) == 1 and len(outputs) > 1:
            block.lane = outputs.index(next(iter(reach[key]))) + 1
    size = int(model.inputs[0].shape[1])
    return Graph(blocks, edges, model.name, int(model.count_params()), size, outputs)


def draw(graph: Graph, output: str | Path) -> Path:
    """Draw the diagram of a :class:`Graph` to a PNG file.

    Parameters
    ----------
    graph : Graph
        From :func:`model_graph`.
    output : str or pathlib.Path
        PNG file to write (its folder is created).

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch

    dx, dy = 1.0, 1.5
    nlanes = len(graph.outputs) if len(graph.outputs) > 1 else 0
    lane_offsets = {i + 1: (i - (nlanes - 1) / 2) * -1.3 for i in range(nlanes)}

    def position(b: Block) -> tuple[float, float]:
        level = round(math.log2(graph.imagesize / b.size)) if b.size else 0
        return b.depth * dx, -level * dy + lane_offsets.get(b.lane, 0.0)

    pos = {k: position(b) for k, b in graph.blocks.items()}
    inputs = [k for k, b in graph.blocks.items() if b.kind == "input"]
    for i, key in enumerate(inputs):  # inputs share column 0: stack them
        pos[key] = (pos[key][0] - 0.2, pos[key][1] + (i - (len(inputs) - 1) / 2) * -0.8)
    # Every shortcut of ResUNet-CMB ends in a BatchNormalization: say so once in the legend, not on every arc.
    residual = [e for e in graph.edges if e.kind == "residual"]
    bn_last = bool(residual) and all(e.label.endswith("BN") for e in residual)
    if bn_last:
        for e in residual:
            e.label = e.label.removesuffix("BN").rstrip(", ")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    width = max(xs) - min(xs) + 3.0
    height = max(ys) - min(ys) + 2.8
    fig = Figure(figsize=(0.62 * width + 1.5, 0.75 * height + 1.2))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.86))
    ax.set_xlim(min(xs) - 1.6, max(xs) + 1.4)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.2)
    ax.set_aspect("equal")
    ax.axis("off")

    colors = {"plain": "#c6dbef", "down": "#6baed6", "up": "#74c476", "linear": "#fdae6b", "input": "#eeeeee"}
    box_w, box_h = 0.56, 0.62

    def anchor(key: str, side: str) -> tuple[float, float]:
        x, y = pos[key]
        half = box_w / 2 if graph.blocks[key].kind in ("conv", "input") else 0.2
        return (x - half, y) if side == "in" else (x + half, y)

    for e in graph.edges:
        (x0, y0), (x1, y1) = anchor(e.src, "out"), anchor(e.dst, "in")
        if e.kind == "main":
            style = {"color": "0.25", "lw": 1.1, "connectionstyle": "arc3,rad=0"}
        elif e.kind == "residual":
            # Arcs bulge upwards, except shortcuts that climb a resolution level: those bulge downwards, clear of
            # the up-sampling block they run beside.
            climbs = graph.blocks[e.dst].size > graph.blocks[e.src].size
            rad = 0.3 if climbs else -0.35
            style = {"color": "#e6550d", "lw": 1.3, "connectionstyle": f"arc3,rad={rad}"}
        else:
            style = {"color": "#31a354", "lw": 1.3, "ls": "--", "connectionstyle": "arc3,rad=-0.25"}
        arrow = FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, shrinkA=1, shrinkB=1,
                                zorder=1, **style)
        ax.add_patch(arrow)
        if e.kind == "residual" and e.label:
            # Label at the apex of the arc: a quadratic Bézier through arc3's control point, i.e. the chord's
            # midpoint shifted by rad/2 × (Δy, −Δx).
            ax.text((x0 + x1) / 2 + rad / 2 * (y1 - y0), (y0 + y1) / 2 - rad / 2 * (x1 - x0) + 0.05 * (1 - 2 * climbs),
                    e.label, fontsize=6.5, color="#a63603", ha="center", va="top" if climbs else "bottom", zorder=4)

    for key, b in graph.blocks.items():
        x, y = pos[key]
        if b.kind == "conv":
            style = "linear" if b.activation == "linear" else "down" if b.stride > 1 else "up" if b.up else "plain"
            ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02",
                                        fc=colors[style], ec="0.2", lw=0.8, zorder=2))
            ax.text(x, y, "5×5" if not b.up else "↑ 5×5", fontsize=6.5, ha="center", va="center", zorder=3)
            ax.text(x, y - box_h / 2 - 0.08, str(b.filters), fontsize=8, ha="center", va="top", zorder=3,
                    fontweight="bold")
            if b.output:
                ax.annotate(b.output, (x + box_w / 2, y), (x + box_w / 2 + 0.55, y), fontsize=10, va="center",
                            arrowprops={"arrowstyle": "<-", "color": "0.25"}, fontweight="bold")
        elif b.kind == "input":
            ax.add_patch(FancyBboxPatch((x - box_w / 2, y - 0.25), box_w, 0.5, boxstyle="round,pad=0.02",
                                        fc=colors["input"], ec="0.2", lw=0.8, zorder=2))
            ax.text(x, y, key, fontsize=7, ha="center", va="center", zorder=3)
        else:
            ax.add_patch(Circle((x, y), 0.2, fc="white", ec="0.2", lw=0.9, zorder=2))
            ax.text(x, y, "+" if b.kind == "add" else "C", fontsize=9, ha="center", va="center", zorder=3)

    levels = sorted({round(math.log2(graph.imagesize / b.size)) for b in graph.blocks.values() if b.size})
    for level in levels:
        side = graph.imagesize // 2**level
        ax.text(min(xs) - 1.5, -level * dy, f"{side}×{side}", fontsize=8, color="0.35", va="center")

    handles = [
        Patch(fc=colors["plain"], ec="0.2", label="conv block: Dropout → Conv 5×5 → SELU → BatchNorm"),
        Patch(fc=colors["down"], ec="0.2", label="conv block, stride 2 (down)"),
        Patch(fc=colors["up"], ec="0.2", label="conv block after UpSampling ×2 (up)"),
        Patch(fc=colors["linear"], ec="0.2", label="output block (linear activation)"),
        Line2D([], [], color="#e6550d", lw=1.3, label="residual connection into + (layers on the shortcut labelled"
               + ("; each ends in BatchNorm)" if bn_last else ")")),
        Line2D([], [], color="#31a354", lw=1.3, ls="--", label="skip connection (into concatenation C)"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 0.93))
    fig.suptitle(f"{graph.name}: inputs {', '.join(k for k, b in graph.blocks.items() if b.kind == 'input')} → "
                 f"outputs {', '.join(graph.outputs)}; {graph.params:,} parameters; numbers: filters", fontsize=10,
                 y=0.985)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=130, bbox_inches="tight", pad_inches=0.15)
    return output


def main(argv: list[str] | None = None) -> int:
    """Build the model, walk its graph and write the diagram; returns the exit status."""
    parser = argparse.ArgumentParser(description="Draw the ResUNet-CMB architecture from its Keras definition.")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="PNG to write (default: %(default)s)")
    parser.add_argument("--imagesize", type=int, default=128, help="map side the model is built for (default 128)")
    parser.add_argument("--model", default="ResUNet_CMB", help="registered model name (default ResUNet_CMB)")
    args = parser.parse_args(argv)
    from training.config import TrainingError
    from training.resunet import get_model_builder

    try:
        model = get_model_builder(args.model)({"imagesize": args.imagesize, "dropval": 0.3})
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = draw(model_graph(model), args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
