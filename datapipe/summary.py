"""Quick looks at a simulated data set: a per-array summary table and a figure of one map set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Rows of the map-set figure: (title, [(array name, panel title)]). In each row the truth's colour scale is shared
#: by the QE map, unless the QE map's range is more than :data:`OWN_SCALE_ABOVE` times larger.
MAP_SET_ROWS = (
    ("CMB polarization [μK]", (("q_len", "observed $Q$"), ("u_len", "observed $U$"), ("e_unl", "primordial $E$"))),
    ("lensing convergence and patchy optical depth", (("tru_kappa", r"true $\kappa$"), ("rec_kappa", r"QE $\kappa$"),
                                                      ("tru_tau", r"true $\tau$"), ("rec_tau", r"QE $\tau$"))),
    ("polarization rotation", (("tru_alpha", r"true $\alpha$"), ("rec_alpha", r"QE $\alpha$"))),
)
#: The truth whose colour scale each QE map shares.
SCALE_OF = {"rec_kappa": "tru_kappa", "rec_tau": "tru_tau", "rec_alpha": "tru_alpha"}
UNITS = {"q_len": r" [$\mu$K]", "u_len": r" [$\mu$K]", "e_unl": r" [$\mu$K]", "tru_alpha": " [rad]",
         "rec_alpha": " [rad]"}
OWN_SCALE_ABOVE = 3.0


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


def settings_title(metadata: dict, index: int) -> str:
    """Figure title naming a map set's settings (geometry, taper, beam, noise, seed) from a file's metadata."""
    settings = metadata.get("settings", {}) if isinstance(metadata, dict) else {}
    if not settings:
        return f"Simulated map set {index}"
    side = settings["npix"] * settings["pixel_arcmin"] / 60.0
    return (f"Simulated map set {index}: {side:.3g}°×{side:.3g}°, {settings['npix']}$^2$ pixels of "
            f"{settings['pixel_arcmin']:g}′, taper {settings['taper_deg']:g}°, beam {settings['beam_arcmin']:g}′, "
            f"noise {settings['noise_uk_arcmin']:g} $\\mu$K′, seed {settings['seed']}")


def _colour_limit(name: str, limits: dict[str, float]) -> tuple[float, bool]:
    """Symmetric colour limit of a panel, and whether it is a QE map on its own scale (not its truth's)."""
    if name in ("q_len", "u_len"):
        return max(limits.get("q_len", 0.0), limits.get("u_len", 0.0)), False
    truth = SCALE_OF.get(name)
    if truth not in limits:
        return limits[name], False
    if limits[name] > OWN_SCALE_ABOVE * limits[truth]:
        return limits[name], True
    return limits[truth], False


def map_set_figure(maps: dict[str, np.ndarray], pixel_arcmin: float, title: str = "") -> Figure:
    """Figure of one map set: observed Q/U and primordial E on one row, true and QE κ and τ on the next.

    Every map is drawn on a centred diverging colour map with symmetric limits (± the 99.5th percentile of the
    absolute value). Q and U share one scale; each QE map shares its truth's, unless its range is more than
    three times larger (the raw τ QE is dominated by noise), in which case its title says how many times.
    Panels of missing arrays are left out (no empty frame).

    Parameters
    ----------
    maps : dict of str to ndarray
        Array name → (npix, npix) map (those of :data:`MAP_SET_ROWS` that exist).
    pixel_arcmin : float
        Pixel size (axes in degrees).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from datapipe.plotting import DIVERGING_CMAP, PAGE_WIDTH, new_figure, style_context, symmetric_limit

    rows = [(name, [(a, t) for a, t in panels if a in maps]) for name, panels in MAP_SET_ROWS]
    rows = [(name, panels) for name, panels in rows if panels]
    limits = {a: symmetric_limit(m) for a, m in maps.items()}
    with style_context():
        fig = new_figure(PAGE_WIDTH, 2.05 * len(rows) + 0.3)
        subfigs = np.atleast_1d(fig.subfigures(len(rows), 1))
        for subfig, (_, panels) in zip(subfigs, rows, strict=True):
            axes = np.atleast_1d(subfig.subplots(1, len(panels), squeeze=False)[0])
            for ax, (name, panel_title) in zip(axes, panels, strict=True):
                image = maps[name]
                side = image.shape[0] * pixel_arcmin / 60.0
                limit, own = _colour_limit(name, limits)
                if own:
                    panel_title += f"\nown scale: {limits[name] / limits[SCALE_OF[name]]:.0f}× the truth's"
                im = ax.imshow(image, origin="upper", cmap=DIVERGING_CMAP, vmin=-limit, vmax=limit,
                               extent=(0, side, 0, side), interpolation="nearest")
                ax.set_title(panel_title)
                ax.set_xlabel("x [deg]")
                bar = subfig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, shrink=0.9)
                bar.set_label(UNITS.get(name, "").strip(" []") or None)
            axes[0].set_ylabel("y [deg]")
        if title:
            fig.suptitle(title)
    return fig


def plot_map_set(path: Path, output: Path, index: int = 0, pixel_arcmin: float | None = None,
                 pdf: bool = True) -> Path:
    """Draw one map set of a pipeline output (:func:`map_set_figure`) to a PNG (and a PDF beside it).

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
    pdf : bool
        Also write a vector PDF of the same stem.

    Returns
    -------
    Path
        ``output``.
    """
    from datapipe.plotting import save_figure
    from datapipe.writer import read_metadata

    try:
        metadata = read_metadata(path)
    except (OSError, KeyError, ValueError):
        metadata = {}
    if pixel_arcmin is None:
        pixel_arcmin = metadata["settings"]["pixel_arcmin"]
    wanted = [name for _, panels in MAP_SET_ROWS for name, _ in panels]
    store = _open_arrays(path)
    try:
        maps = {name: np.asarray(store[name][index], dtype=float) for name in wanted if name in _map_names(store)}
    finally:
        store.close()
    fig = map_set_figure(maps, pixel_arcmin, settings_title(metadata, index))
    save_figure(fig, output, pdf=pdf)
    return Path(output)
