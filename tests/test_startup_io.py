"""Start-up cost and I/O paths: which libraries load when, map writing, frame-by-frame reads.

Imports are checked in fresh subprocesses (``sys.modules`` after the command); timings live in
benchmarks/bench_startup.py, not here.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import xarray as xr
from conftest import write_small_pet

import sv2a
from sv2a.errors import DataError, ModelError
from sv2a.parametric.accessor import DESCRIPTIONS, OPTIONAL_MAPS, assemble, map_filename

HEAVY = ("numpy", "xarray", "pandas", "scipy", "matplotlib", "statsmodels", "dask")


def _loaded_after(code: str) -> list[str]:
    """Heavy top-level libraries in ``sys.modules`` after running ``code`` in a new process."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} " \
            "if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli(*argv: str) -> str:
    return ("import sys\nfrom sv2a.cli import main\n"
            f"try:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass")


def test_import_sv2a_loads_no_heavy_library():
    assert _loaded_after("import sv2a") == []


@pytest.mark.parametrize("argv", [["--help"], ["--version"], []])
def test_top_level_help_loads_no_heavy_library(argv):
    assert _loaded_after(_cli(*argv)) == []


def test_help_lists_every_subcommand_with_its_module_summary(capsys):
    from sv2a.cli import _COMMANDS, main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, (modname, summary) in _COMMANDS.items():
        doc = (importlib.import_module(modname).__doc__ or "").strip().splitlines()[0]
        assert summary == doc, f"sv2a/cli.py summary of {name!r} differs from {modname}"
        assert name in text and " ".join(summary.split()) in text


def test_subcommand_still_parses_and_runs(capsys):
    from sv2a.cli import main

    assert main(["models"]) == 0
    assert "srtm2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["nosuchcommand"])
    assert e.value.code == 2


def test_model_import_defers_scipy_signal_and_sparse():
    code = "import sv2a.models, sv2a.parametric\nimport sys\n" \
           "assert 'scipy.signal' not in sys.modules and 'scipy.sparse' not in sys.modules"
    _loaded_after(code)  # raises CalledProcessError if the assertion fails


def test_lazy_filter_equals_the_recursion():
    # _filt(a, z, zi) is y_i = a y_{i-1} + z_i with y_{-1} = zi / a; the first call swaps in
    # the scipy C routine. Independent route: the recursion in Python, to float64 rounding
    # (rtol 1e-12 over 50 steps of a contraction).
    from sv2a.models import _kinetics

    rng = np.random.default_rng(3)
    z = rng.standard_normal(50)
    for a, zi in [(0.9, 0.0), (0.5, 0.7), (0.99, -2.0)]:
        got = _kinetics._filt(a, z, zi)
        want = np.empty_like(z)
        prev = zi
        for i, v in enumerate(z):
            prev = v + (prev if i == 0 else a * prev)
            want[i] = prev
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_suvr_map_process_loads_neither_dask_nor_scipy_signal(tmp_path):
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=(6, 5, 4))
    code = (
        "import numpy as np, sv2a, sys\n"
        f"pet = sv2a.load_pet({str(p)!r})\n"
        "ref = np.zeros(pet.shape[:3], bool); ref[0] = True\n"
        "ds = sv2a.parametric_maps(pet, 'suvr', reference=ref, mask=~ref, window=(10.0, 38.0))\n"
        f"ds.sv2a.to_nifti({str(tmp_path / 'out')!r}, 'sub-01')\n"
        "assert 'scipy.signal' not in sys.modules, 'scipy.signal imported'"
    )
    loaded = _loaded_after(code)
    assert "dask" not in loaded and {"numpy", "xarray"} <= set(loaded)
    assert (tmp_path / "out" / map_filename("sub-01", "suvr", "SUVR")).exists()


def _maps_dataset(shape=(5, 4, 3)) -> xr.Dataset:
    rng = np.random.default_rng(0)
    maps = {nm: rng.uniform(0.01, 4.0, shape).astype(np.float32)
            for nm in ("BPND", "R1", "k2", "k2a", "k2prime", "DVR", "rss")}
    maps["BPND"][0, 0, 0] = np.nan
    flag = (rng.random(shape) < 0.2).astype(np.uint8)
    return assemble("srtm2", maps, flag, np.diag([2.0, 2.0, 2.0, 1.0]), {"fwhm_mm": 0.0},
                    {"BPND": "1", "k2": "1/min"})


def test_assemble_equals_dataarray_construction():
    # Independent route: the same Dataset built from DataArrays (xarray's checked path).
    ds = _maps_dataset()
    ref = xr.Dataset(
        {nm: xr.DataArray(ds[nm].values.copy(), dims=("x", "y", "z"), attrs=dict(ds[nm].attrs))
         for nm in ds.data_vars}, attrs=dict(ds.attrs))
    xr.testing.assert_identical(ds, ref)
    assert ds["flag"].dtype == np.uint8 and ds["BPND"].dtype == np.float32
    assert ds["flag"].attrs["long_name"] == DESCRIPTIONS["flag"]


def test_to_nifti_default_all_and_list(tmp_path):
    ds = _maps_dataset()
    default = {p.name for p in ds.sv2a.to_nifti(tmp_path / "d", "sub-01")}
    assert default == {map_filename("sub-01", "srtm2", n)
                       for n in ("BPND", "R1", "k2", "DVR", "flag")}
    assert set(OPTIONAL_MAPS) == {"rss", "k2a", "k2prime"}
    every = ds.sv2a.to_nifti(tmp_path / "a", "sub-01", params="all")
    assert [p.name for p in every] == [map_filename("sub-01", "srtm2", str(n))
                                       for n in ds.data_vars]
    some = ds.sv2a.to_nifti(tmp_path / "s", "sub-01", params=["rss", "flag"])
    assert [p.name for p in some] == [map_filename("sub-01", "srtm2", n) for n in ("rss", "flag")]
    for p in every:
        nm = json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())["Parameter"]
        np.testing.assert_array_equal(np.asarray(nib.load(p).dataobj), ds[nm].values)


def test_to_nifti_compresslevel_changes_bytes_not_values(tmp_path):
    ds = _maps_dataset((40, 40, 30))
    a = ds.sv2a.to_nifti(tmp_path / "l1", "sub-01", params=["BPND"], compresslevel=1)[0]
    b = ds.sv2a.to_nifti(tmp_path / "l9", "sub-01", params=["BPND"], compresslevel=9)[0]
    assert a.read_bytes() != b.read_bytes()
    np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))


@pytest.mark.parametrize("kw, msg", [({"params": "some"}, "list of map names or 'all'"),
                                     ({"params": ["nope"]}, "no map"),
                                     ({"compresslevel": 0}, "compresslevel must be 1-9")])
def test_to_nifti_bad_arguments(tmp_path, kw, msg):
    with pytest.raises(ModelError, match=msg):
        _maps_dataset().sv2a.to_nifti(tmp_path, "sub-01", **kw)


FRAMES_40 = [(60.0 * i, 60.0) for i in range(40)]


@pytest.fixture(scope="module")
def big_gz(tmp_path_factory):
    """A 64x64x32x40 float32 .nii.gz (21 MB raw: three parallel gzip members of sv2a's
    writer) and the same data as a single-member file written by nibabel."""
    d = tmp_path_factory.mktemp("gz")
    data = np.random.default_rng(1).uniform(0.5, 9.0, (64, 64, 32, 40)).astype(np.float32)
    p, _ = write_small_pet(d / "sub-01_pet.nii.gz", data=data, frames=FRAMES_40)
    q = d / "sub-02_pet.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), q)
    q.with_name("sub-02_pet.json").write_bytes(p.with_name("sub-01_pet.json").read_bytes())
    return data, [p, q]


@pytest.mark.parametrize("igzip", [True, False], ids=["indexed_gzip", "gzip"])
def test_frames_read_in_any_order_match_the_data(big_gz, monkeypatch, igzip):
    from nibabel import _compression

    if igzip:
        pytest.importorskip("indexed_gzip")
    else:
        monkeypatch.setattr(_compression, "HAVE_INDEXED_GZIP", False)
    data, paths = big_gz
    for p in paths:
        pet = sv2a.load_pet(p)
        for i in (0, 1, 2, 39, 5, 20, 21, 3):  # forward, then back (a rewind), then forward
            np.testing.assert_array_equal(pet.frame(i), data[..., i], err_msg=f"{p.name} {i}")
        np.testing.assert_array_equal(pet.data[:, 3:9, 30:], data[:, 3:9, 30:])


def test_fallback_keeps_the_gzip_stream_open_and_still_detects_truncation(tmp_path,
                                                                            monkeypatch):
    from nibabel import _compression

    from sv2a.pet import _keep_file_open

    monkeypatch.setattr(_compression, "HAVE_INDEXED_GZIP", False)
    assert _keep_file_open(tmp_path / "a.nii.gz") is True
    assert _keep_file_open(tmp_path / "a.nii") is None
    p, _ = write_small_pet(tmp_path / "sub-01_pet.nii.gz", shape=(20, 20, 20))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    pet = sv2a.load_pet(p)
    with pytest.raises(DataError, match="truncated or corrupt"):
        for i in range(pet.n_frames):
            pet.frame(i)

