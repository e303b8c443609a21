"""The package list in pyproject.toml must name every sub-package, and the shipped data exist."""

import tomllib
from pathlib import Path

import sv2a
from sv2a.resources import atlas_dir, demo_data_dir

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_installed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    inits = (ROOT / "sv2a").rglob("__init__.py")
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in inits}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert cfg["package-dir"] == {"sv2a.atlases": "atlases", "sv2a.demo_data": "demo_data"}


def test_shipped_data_found():
    for species in ("human", "rat", "mouse"):
        assert (atlas_dir() / f"phantom_{species}_dseg.nii.gz").exists()
        assert (atlas_dir() / f"phantom_{species}_dseg.tsv").exists()
    assert (demo_data_dir() / "dataset_description.json").exists()
    assert sorted(demo_data_dir().glob("sub-*"))


def test_lazy_public_api():
    for name in sv2a.__all__:
        assert getattr(sv2a, name) is not None
    assert callable(sv2a.fit) and callable(sv2a.parametric_maps)
    assert "srtm2" in sv2a.models.available()


def test_typed_marker_is_shipped():
    # PEP 561: type checkers use sv2a's annotations only when py.typed is installed
    assert (ROOT / "sv2a" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in data["package-data"]["sv2a"]
