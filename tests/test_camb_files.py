"""Comparing our spectra with CAMB text files: on the paper's own files when present, always on planted files."""

import os
from pathlib import Path

import numpy as np
import pytest

from datapipe.camb_files import AGREEMENTS, compare_with_camb_files, read_camb_column
from datapipe.spectra import CACHE_LMAX, main

#: The paper's CAMB output set (quicklens's Planck 2013 files): $RESUNET_CAMB_REFERENCE, else
#: ../shared/reference/camb_planck2013 beside the repository.
REFERENCE = Path(os.environ.get("RESUNET_CAMB_REFERENCE")
                 or Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "camb_planck2013")
#: The agreements the documentation states: spectrum → (lmin, lmax, largest |ours/theirs - 1|).
DOCUMENTED = {"pp": (2, 6000, 0.01), "tt": (2, 5000, 0.005), "ee": (2, 5000, 0.005), "lensed_bb": (10, 6000, 0.01)}


def test_documented_agreements_are_the_ones_checked():
    assert {name: (lmin, lmax, tol) for name, (_, lmin, lmax, tol) in AGREEMENTS.items()} == DOCUMENTED


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"the paper's CAMB files are not at {REFERENCE} "
                                                   "(set RESUNET_CAMB_REFERENCE to the folder holding them)")
def test_cache_agrees_with_the_papers_camb_files(spectra):
    agreements = {a.name: a for a in compare_with_camb_files(REFERENCE, spectra)}
    assert set(agreements) == set(DOCUMENTED)
    for name, (lmin, lmax, tolerance) in DOCUMENTED.items():
        a = agreements[name]
        assert (a.lmin, a.lmax) == (lmin, lmax), f"{name}: the reference files do not reach L = {lmax}"
        assert a.worst < tolerance, a.describe()


# ---------------------------------------------------------------------------------------------------------------
# The comparison itself, on CAMB-format files written here from our own spectra with planted differences.

def _write_camb_set(folder: Path, spectra, scale: dict[str, np.ndarray], lmax: int = 7000) -> None:
    """A classic CAMB output set (ℓ(ℓ+1)C_ℓ/2π, [L(L+1)]²C_L^φφ/2π) of ``spectra`` × ``scale[name]``."""
    ell = np.arange(2, lmax + 1)
    dl = ell * (ell + 1.0) / (2 * np.pi)
    dpp = (ell * (ell + 1.0)) ** 2 / (2 * np.pi)

    def col(name, factor):
        planted = np.asarray(scale.get(name, 1.0))
        return getattr(spectra, name)[ell] * factor * (planted[ell] if planted.ndim else planted)

    zeros = np.zeros(ell.size)
    tables = {
        "test_scalCls.dat": [col("tt", dl), col("ee", dl), col("te", dl), zeros, zeros],
        "test_lensedCls.dat": [col("lensed_tt", dl), col("lensed_ee", dl), col("lensed_bb", dl), col("lensed_te", dl)],
        "test_lenspotentialCls.dat": [col("tt", dl), col("ee", dl), zeros, col("te", dl), col("pp", dpp), zeros,
                                      zeros],
    }
    for filename, columns in tables.items():
        np.savetxt(folder / filename, np.column_stack([ell, *columns]), fmt=["%6d"] + ["%16.8E"] * len(columns))


def _planted(lmax: int = 7000) -> dict[str, np.ndarray]:
    """Known differences: uniform offsets, a spike inside each range and one outside (which must not count)."""
    ones = np.ones(CACHE_LMAX + 1)
    pp, tt, ee, bb = 1.004 * ones, 0.998 * ones, 1.003 * ones, 1.02 * ones
    pp[4321] = 1.008   # inside 2..6000: the worst of C^φφ
    pp[6500] = 1.5     # outside: ignored
    tt[5500] = 0.5     # outside 2..5000: ignored
    ee[3] = 1.0045     # inside, near the low end: the worst of EE
    bb[5] = 2.0        # below ℓ = 10: ignored
    return {"pp": 1.0 / pp, "tt": 1.0 / tt, "ee": 1.0 / ee, "lensed_bb": 1.0 / bb}  # theirs = ours / planted


def test_comparison_finds_the_planted_differences(spectra, tmp_path):
    _write_camb_set(tmp_path, spectra, _planted())
    found = {a.name: a for a in compare_with_camb_files(tmp_path, spectra)}
    # ours/theirs - 1 is the planted factor - 1, up to the 8 significant digits of the text files.
    expected = {"pp": (0.008, 4321), "tt": (0.002, None), "ee": (0.0045, 3), "lensed_bb": (0.02, None)}
    for name, (worst, where) in expected.items():
        assert found[name].worst == pytest.approx(worst, abs=1e-6), name
        if where is not None:
            assert found[name].worst_ell == where, name
    assert [found[n].ok for n in ("pp", "tt", "ee", "lensed_bb")] == [True, True, True, False]
    assert (found["pp"].lmin, found["pp"].lmax) == (2, 6000)


def test_reader_undoes_the_camb_factors(spectra, tmp_path):
    _write_camb_set(tmp_path, spectra, {}, lmax=3000)
    for name in ("tt", "ee", "lensed_bb", "pp"):
        ell, cl = read_camb_column(tmp_path, name)
        assert ell[0] == 2 and ell[-1] == 3000
        np.testing.assert_allclose(cl, getattr(spectra, name)[ell], rtol=1e-7, err_msg=name)


def test_comparison_stops_where_the_files_stop(spectra, tmp_path):
    _write_camb_set(tmp_path, spectra, {}, lmax=4000)
    found = {a.name: a for a in compare_with_camb_files(tmp_path, spectra)}
    assert found["pp"].lmax == 4000 and found["tt"].lmax == 4000
    assert all(a.worst < 1e-6 for a in found.values())


def test_compare_command_prints_the_agreements_and_fails_on_a_bad_one(spectra, tmp_path, capsys):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    _write_camb_set(good, spectra, {})
    _write_camb_set(bad, spectra, _planted())
    assert main(["--compare", str(good)]) == 0
    out = capsys.readouterr().out
    for label in ("C_L^phiphi", "unlensed TT", "unlensed EE", "lensed BB"):
        line = next(line for line in out.splitlines() if label in line)
        assert "ok" in line and "FAILS" not in line
    assert "2 <= L <= 6000" in out
    assert main(["--compare", str(bad)]) == 1
    assert "lensed BB" in (line := next(x for x in capsys.readouterr().out.splitlines() if "lensed BB" in x))
    assert "FAILS" in line and "0.0200" in line


def test_compare_command_rejects_a_missing_folder_or_file(tmp_path, capsys):
    assert main(["--compare", str(tmp_path / "nowhere")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["--compare", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "_scalCls.dat" in err and len(err.strip().splitlines()) == 1
