"""Export a pipeline map file to FITS sky maps: one enmap FITS cube per array.

``python -m datapipe.export map_sets32.npz --output map_sets32/`` writes ``map_sets32/q_len.fits`` etc., each a
(nmaps, npix, npix) float32 cube with the CAR WCS of the patch, in sky order (declination increasing with the row,
RA decreasing with the column, so ds9 and astropy show RA increasing to the left). pixell reads them with
``enmap.read_map``; ``taper.fits`` holds the taper when ``window_info.npz`` lies beside the input. Maps are streamed
in blocks, so memory does not grow with the number of maps, and each file is written under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datapipe.interrupts import quiet_start

if __name__ == "__main__":
    quiet_start("python -m datapipe.export")  # Ctrl-C during the imports below: one line, no traceback

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

from datapipe.commandline import run_command  # noqa: E402
from datapipe.diskio import check_creatable_folder, describe_os_error  # noqa: E402
from datapipe.errors import PipelineError  # noqa: E402
from datapipe.io import MapFile, array_unit, sky_geometry, to_sky_order  # noqa: E402
from datapipe.writer import atomic_output  # noqa: E402

#: Maps read and written per block (16 MB at 128 × 128).
BLOCK_MAPS = 256


def fits_header(wcs, nmaps: int, npix: int, name: str) -> fits.Header:
    """Primary FITS header of a (nmaps, npix, npix) float32 cube with the map's WCS.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Sky-order geometry of one map (:func:`datapipe.io.sky_geometry`).
    nmaps, npix : int
        Cube shape.
    name : str
        Pipeline array name, stored as ``EXTNAME``; ``BUNIT`` and, for Q/U maps, ``POLCCONV`` follow from it.

    Returns
    -------
    astropy.io.fits.Header
    """
    header = fits.PrimaryHDU().header
    header["BITPIX"] = -32
    header["NAXIS"] = 3
    header.set("NAXIS1", npix, after="NAXIS")
    header.set("NAXIS2", npix, after="NAXIS1")
    header.set("NAXIS3", nmaps, after="NAXIS2")
    header.update(wcs.to_header(relax=True))
    header["EXTNAME"] = (name, "ResUNet-CMB pipeline array")
    unit = array_unit(name)
    if unit is not None:
        header["BUNIT"] = unit
    if name.split("_")[0] in ("q", "u"):
        header["POLCCONV"] = ("COSMO", "pixell iau=False polarization convention")
    return header


def export_array(source: MapFile, name: str, path: Path, max_maps: int | None, pixel_arcmin: float) -> Path:
    """Stream one array of a map file into a FITS cube at ``path`` (atomically), in sky order."""
    nsims, npix = source.shapes[name][0], source.shapes[name][1]
    nmaps = nsims if max_maps is None else min(nsims, max_maps)
    _, wcs = sky_geometry(npix, pixel_arcmin)
    with atomic_output(path, suffix=".fits") as tmp, fits.StreamingHDU(tmp, fits_header(wcs, nmaps, npix, name)) as out:
        for stored in source.iter_blocks(name, nmaps, BLOCK_MAPS):
            if not source.flipped:
                stored = stored[:, ::-1]
            out.write(to_sky_order(stored).astype(np.float32))
    return path


def export_taper(window_file: Path, path: Path, pixel_arcmin: float) -> Path:
    """Write the taper of ``window_info.npz`` (stored flipped like the maps) as a 2-D FITS map in sky order."""
    from pixell import enmap

    with np.load(window_file) as f:
        taper = np.asarray(f["taper"], dtype=np.float32)
    _, wcs = sky_geometry(taper.shape[0], pixel_arcmin)
    with atomic_output(path, suffix=".fits") as tmp:
        enmap.write_map(str(tmp), enmap.ndmap(to_sky_order(taper), wcs), fmt="fits")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m datapipe.export",
        description="Export the arrays of a pipeline map file (.npz or .h5) as FITS sky maps: OUTPUT/<array>.fits, "
                    "a (nmaps, npix, npix) float32 cube with its CAR WCS, RA increasing to the left; also "
                    "OUTPUT/taper.fits when window_info.npz lies beside FILE.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="map file written by datapipe/datapipeline.py")
    p.add_argument("--output", type=Path, default=None, metavar="DIR",
                   help="folder for the FITS files (default: FILE without its suffix); created if missing")
    p.add_argument("--maps", default=None, metavar="A,B", help="comma-separated arrays to export (default: all)")
    p.add_argument("--max-maps", type=int, default=None, metavar="N", help="export only the first N maps of each array")
    p.add_argument("--overwrite", action="store_true", help="replace existing FITS files")
    return p


def plan_export(args: argparse.Namespace) -> tuple[MapFile, list[str], dict[str, Path], float]:
    """Check the request before anything is written: (source, names, name → output path, pixel size)."""
    source = MapFile(args.file)
    names = [n.strip() for n in args.maps.split(",") if n.strip()] if args.maps else list(source.shapes)
    if not names:
        raise PipelineError("--maps names no array; give e.g. --maps q_len,u_len")
    source.check_names(names)
    if args.max_maps is not None and args.max_maps <= 0:
        raise PipelineError(f"--max-maps must be a positive integer (got {args.max_maps})")
    pixel_arcmin = source.pixel_arcmin()
    folder = args.output if args.output is not None else args.file.with_suffix("")
    if folder.exists() and not folder.is_dir():
        raise PipelineError(f"--output {folder} is a file; give a folder")
    check_creatable_folder(folder, "output folder", "--output")  # a file above it, or a read-only place
    if not folder.parent.is_dir():
        raise PipelineError(f"the parent of --output {folder} does not exist; create it first")
    targets = {name: folder / f"{name}.fits" for name in names}
    window = args.file.parent / "window_info.npz"
    if window.is_file():
        targets["taper"] = folder / "taper.fits"
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.overwrite:
        raise PipelineError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace or choose another "
                            "--output")
    return source, names, targets, pixel_arcmin


def describe_write_error(exc: OSError) -> str:
    """One line for an ``OSError`` met while exporting; astropy reports a full disk as a short write, no errno."""
    if exc.errno is None and "written" in str(exc):
        return (f"a FITS file was cut short ({exc}): the disk is probably full; free some space or choose another "
                "--output")
    return describe_os_error(exc)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def export() -> None:
        source, names, targets, pixel_arcmin = plan_export(args)
        next(iter(targets.values())).parent.mkdir(exist_ok=True)
        for name in names:
            print(f"wrote {export_array(source, name, targets[name], args.max_maps, pixel_arcmin)}")
        if "taper" in targets:
            print(f"wrote {export_taper(args.file.parent / 'window_info.npz', targets['taper'], pixel_arcmin)}")

    return run_command(export, bad_input=(PipelineError,), prog=parser.prog, describe=describe_write_error,
                       write_failed="; the file being written was removed, files already written are complete",
                       stopped="interrupted ({signal}); files not completed were removed")

if __name__ == "__main__":
    sys.exit(main())
