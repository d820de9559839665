"""Quick looks at a simulated data set: a per-array summary table and a figure of one map set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Panels of the map-set figure: (array name, title, colour map).
MAP_SET_PANELS = (
    ("q_len", "observed Q [μK]", "RdBu_r"),
    ("u_len", "observed U [μK]", "RdBu_r"),
    ("e_unl", "primordial E [μK]", "RdBu_r"),
    ("tru_kappa", "true κ", "viridis"),
    ("tru_tau", "true τ", "magma"),
    ("rec_kappa", "QE κ", "viridis"),
    ("rec_tau", "QE τ", "magma"),
    ("tru_alpha", "true α [rad]", "RdBu_r"),
    ("rec_alpha", "QE α [rad]", "RdBu_r"),
)


def _open_arrays(path: Path):
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return np.load(path)
    import h5py

    return h5py.File(path, "r")


def _map_names(store) -> list[str]:
    names = store.files if hasattr(store, "files") else list(store.keys())
    return [name for name in names if name != "metadata"]


def summary_table(path: Path) -> str:
    """A text table of every array in a pipeline output: shape, mean and standard deviation.

    Arrays are read one at a time, so memory stays at one array.
    """
    store = _open_arrays(path)
    try:
        rows = [f"{'array':14s} {'shape':>20s} {'mean':>12s} {'std':>12s}"]
        for name in _map_names(store):
            data = np.asarray(store[name], dtype=np.float64)
            rows.append(f"{name:14s} {str(tuple(data.shape)):>20s} {data.mean():12.4g} {data.std():12.4g}")
        return "\n".join(rows)
    finally:
        store.close()


def plot_map_set(path: Path, output: Path, index: int = 0, pixel_arcmin: float | None = None) -> Path:
    """Figure of one map set: observed Q/U, primordial E, true κ, τ and α, their QE maps (those present).

    Parameters
    ----------
    path : Path
        Pipeline output (``.npz`` or ``.h5``).
    output : Path
        PNG to write.
    index : int
        Which map set.
    pixel_arcmin : float, optional
        Pixel size for the axis labels (default: from the file's metadata).

    Returns
    -------
    Path
        ``output``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datapipe.writer import read_metadata

    if pixel_arcmin is None:
        pixel_arcmin = read_metadata(path)["settings"]["pixel_arcmin"]
    store = _open_arrays(path)
    try:
        panels = [(name, title, cmap, np.asarray(store[name][index])) for name, title, cmap in MAP_SET_PANELS
                  if name in _map_names(store)]
    finally:
        store.close()
    ncols = 4
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.6 * nrows), squeeze=False)
    side = panels[0][3].shape[0] * pixel_arcmin / 60.0
    for ax, (_, title, cmap, image) in zip(axes.flat, panels, strict=False):
        limit = np.percentile(np.abs(image), 99.5) or 1.0
        vmin = -limit if cmap == "RdBu_r" else None
        vmax = limit if cmap == "RdBu_r" else None
        im = ax.imshow(image, origin="upper", cmap=cmap, vmin=vmin, vmax=vmax, extent=(0, side, 0, side))
        ax.set_title(title)
        ax.set_xlabel("deg")
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"map set {index} of {Path(path).name}")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
