"""The data-check figure: each array's binned spectrum against its expectation, with the ratio beneath."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from datapipe.plotting import PAGE_WIDTH, dl_factor, log_limits, new_figure, paper_style, positive, power_unit_suffix

#: Range of the ratio panels (linear); a panel whose ratios leave it goes logarithmic, up to :data:`WIDE_RANGE`.
RATIO_RANGE = (0.5, 1.5)
#: Widest range of a ratio panel; points beyond are drawn at the edge as open triangles.
WIDE_RANGE = (0.1, 10.0)


def ratio_range(ratio: np.ndarray) -> tuple[float, float, bool]:
    """Limits of a ratio panel and whether it is logarithmic: linear 0.5–1.5 when every ratio fits, else a log
    range around them within 0.1–10."""
    finite = ratio[np.isfinite(ratio)]
    if not finite.size or (finite.min() >= RATIO_RANGE[0] and finite.max() <= RATIO_RANGE[1]):
        return RATIO_RANGE[0], RATIO_RANGE[1], False
    lo = max(WIDE_RANGE[0], min(0.8, float(finite.min()) / 1.25))
    hi = min(WIDE_RANGE[1], max(1.25, float(finite.max()) * 1.25))
    return lo, hi, True


def _clip_ratio(ratio: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inside = np.where((ratio >= lo) & (ratio <= hi), ratio, np.nan)
    above = np.where(ratio > hi, hi, np.nan)
    below = np.where(ratio < lo, lo, np.nan)
    return inside, above, below


def settings_line(check: Any) -> str:
    """One line describing the data set: maps, geometry, taper, beam, noise, null fraction, w2."""
    s = check.settings
    found, sigma = check.null_fraction
    side = s.npix * s.pixel_arcmin / 60.0
    return (f"{check.path.name}: {check.nmaps} map sets of {s.npix}$^2$ pixels ({side:.3g}° side), taper "
            f"{s.taper_deg:g}°, beam {s.beam_arcmin:g}′, noise {s.noise_uk_arcmin:g} $\\mu$K′; null fraction "
            f"{found:.3f} (requested {s.null_fraction:g} ± {sigma:.3f}); $w_2$ = {check.w2:.4f} "
            f"({check.w2_source})")


@paper_style
def plot_data_check(check: Any, ncols: int = 3) -> Any:
    """Binned spectra of a data set's arrays against their expectation, taper accounted for.

    Each array gets a panel of :math:`L(L+1)C_L/2\\pi` (measured over the non-null map sets, with standard errors,
    against the expected spectrum convolved with the taper) and, beneath it, the ratio measured / expected with a
    ±10 % band (linear from 0.5 to 1.5, or logarithmic when the ratios leave that range). Each data line carries a
    ``gid`` (``"<array>:measured"``, ``"<array>:expected"``, ``"<array>:ratio"``) so tests can read the plotted
    numbers.

    Parameters
    ----------
    check : datapipe.datacheck.DataCheck
        From :func:`datapipe.datacheck.check_data_file` (the numbers of the printed table).
    ncols : int
        Panels per row (three keep the titles readable at page width).

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = list(check.arrays)
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig = new_figure(PAGE_WIDTH, 2.4 * nrows + 0.45)
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[2.6, 1.0] * nrows)
    for i, name in enumerate(names):
        a = check.arrays[name]
        row, col = divmod(i, ncols)
        ax = fig.add_subplot(grid[2 * row, col])
        ax_ratio = fig.add_subplot(grid[2 * row + 1, col], sharex=ax)
        scale = dl_factor(a.ell)
        bars = ax.errorbar(a.ell, positive(scale * a.measured), yerr=scale * np.nan_to_num(a.error), fmt="o",
                           color="C0", ms=2.5, elinewidth=0.7, label="measured")
        bars.lines[0].set_gid(f"{name}:measured")
        framed = [scale * a.measured]
        if a.expected is not None:
            (line,) = ax.plot(a.ell, positive(scale * a.expected), "-", color="k", lw=1.0, label="expected")
            line.set_gid(f"{name}:expected")
            framed.append(scale * a.expected)
            lo, hi, logarithmic = ratio_range(a.ratio)
            inside, above, below = _clip_ratio(a.ratio, lo, hi)
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.where(a.expected > 0, a.error / a.expected, np.nan)
            ratio_bars = ax_ratio.errorbar(a.ell, inside, yerr=np.nan_to_num(err), fmt="o", color="C0", ms=2.5,
                                           elinewidth=0.7)
            ratio_bars.lines[0].set_gid(f"{name}:ratio")
            ax_ratio.plot(a.ell, above, "^", color="C3", mfc="white", ms=3.5)
            ax_ratio.plot(a.ell, below, "v", color="C3", mfc="white", ms=3.5)
            ax_ratio.axhspan(0.9, 1.1, color="0.85", lw=0)
            ax_ratio.axhline(1.0, color="k", lw=0.8)
            ax.set_title(f"{name}\n" + r"$\langle$meas/exp$\rangle$" + f" = {a.mean_ratio:.2f},  "
                         + r"$\chi^2/N_{\rm bins}$" + f" = {a.chi2_per_bin:.1f}")
            if logarithmic:
                from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

                ax_ratio.set_yscale("log")
                ax_ratio.yaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10]))
                ax_ratio.yaxis.set_major_formatter(ScalarFormatter())
                ax_ratio.yaxis.set_minor_formatter(NullFormatter())
            ax_ratio.set_ylim(lo, hi)
        else:
            ax_ratio.text(0.5, 0.5, "no model", transform=ax_ratio.transAxes, ha="center", va="center")
            ax_ratio.set_ylim(*RATIO_RANGE)
            ax.set_title(f"{name}\n{a.description}")
        ax.set_yscale("log")
        ax.set_ylim(*log_limits(framed, below=0.5, above=2.0))
        ax.tick_params(labelbottom=False)
        ax_ratio.set_xlim(0, float(a.bin_hi.max()) * 1.02)
        if col == 0:
            ax.set_ylabel(r"$L(L+1)C_L/2\pi$" + power_unit_suffix(a.units))
            ax_ratio.set_ylabel("meas/exp")
        if row == nrows - 1 or i + ncols >= len(names):
            ax_ratio.set_xlabel(r"multipole $L$")
    fig.suptitle(settings_line(check), fontsize=7.5)
    if fig.axes:
        handles, labels = fig.axes[0].get_legend_handles_labels()
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=2)
        legend.set_title("spectra of the non-null map sets, taper accounted for; grey band: ±10 %; "
                         "open triangles: ratio off the panel", prop={"size": 7})
    return fig
