"""The detectors' River models load without SciPy, and their state still pickles across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fieldstream.detectors.river_models import import_skipping_inits


def run_python(code: str, tmp_path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def package_with_heavy_init(tmp_path: Path) -> Path:
    pkg = tmp_path / "heavy_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the package __init__ ran')\n")
    (pkg / "model.py").write_text("class Model:\n    pass\n")
    return tmp_path


def test_a_module_is_imported_without_its_package_init(package_with_heavy_init: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(package_with_heavy_init))
    monkeypatch.delitem(sys.modules, "heavy_pkg", raising=False)
    try:
        (model,) = import_skipping_inits(["heavy_pkg.model"], ["heavy_pkg"])
        assert model.Model.__module__ == "heavy_pkg.model"
        assert sys.modules["heavy_pkg.model"] is model
        # The stand-in is gone: importing the package later runs its real __init__.
        assert "heavy_pkg" not in sys.modules
        with pytest.raises(RuntimeError, match="the package __init__ ran"):
            __import__("heavy_pkg")
    finally:
        for name in ("heavy_pkg", "heavy_pkg.model"):
            sys.modules.pop(name, None)


def test_a_missing_package_is_an_import_error_and_leaves_nothing_behind() -> None:
    before = set(sys.modules)
    with pytest.raises(ImportError):
        import_skipping_inits(["no_such_pkg_for_fieldstream.model"], ["no_such_pkg_for_fieldstream"])
    assert not {m for m in sys.modules if m.startswith("no_such_pkg_for_fieldstream")}
    assert set(sys.modules) >= before


def test_a_worker_loads_no_scipy_and_detector_state_survives_a_new_process(tmp_path: Path) -> None:
    # A fresh interpreter, as a worker starts: build and feed the River-backed detectors, pickle them.
    blob = tmp_path / "detectors.pickle"
    out = run_python(f"""
        import math, pickle, sys
        from datetime import UTC, datetime, timedelta
        import fieldstream.streams.app  # what a worker imports
        from fieldstream.detectors.drift import DriftDetector
        from fieldstream.detectors.halfspace import HalfSpaceDetector
        from fieldstream.schemas.reading import Reading

        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        dets = [DriftDetector(method="adwin"), DriftDetector(method="page_hinkley"),
                HalfSpaceDetector(sample_every=2, warmup_samples=5, seed=7)]
        for i in range(400):
            r = Reading("dev-1", "tank_probe", t0 + timedelta(seconds=10 * i), i,
                        {{"ph": 7 + 0.2 * math.sin(i / 5), "temperature": 20 + (i % 7) * 0.1}})
            for d in dets:
                d.score_learn_one(r)
        open({str(blob)!r}, "wb").write(pickle.dumps(dets))
        print(sorted(m for m in sys.modules if m.startswith("scipy.")))
        print(sorted(m for m in ("river.drift", "river.anomaly", "river.tree") if m in sys.modules))
    """, tmp_path)
    scipy_modules, river_packages = out.splitlines()
    assert "scipy.stats" not in scipy_modules and "scipy.special" not in scipy_modules
    assert river_packages == "[]"  # the stand-ins were taken away

    # Another fresh interpreter restores that state and goes on exactly like the original.
    out = run_python(f"""
        import math, pickle, sys
        from datetime import UTC, datetime, timedelta
        import fieldstream.detectors.engine
        from fieldstream.schemas.reading import Reading

        dets = pickle.loads(open({str(blob)!r}, "rb").read())
        twins = pickle.loads(pickle.dumps(dets))
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        verdicts = [[], []]
        for i in range(400, 700):
            level = 9.0 if i >= 500 else 7.0  # a shift every detector here catches
            r = Reading("dev-1", "tank_probe", t0 + timedelta(seconds=10 * i), i,
                        {{"ph": level + 0.2 * math.sin(i / 5), "temperature": 20 + (i % 7) * 0.1}})
            for k, group in enumerate((dets, twins)):
                for d in group:
                    verdicts[k] += [(v.detector, v.metric, v.score) for v in d.score_learn_one(r)]
        assert verdicts[0] == verdicts[1], verdicts
        print(len({{v[0] for v in verdicts[0]}}), "scipy.stats" in sys.modules)
        from river import anomaly, drift  # the real packages still import, with the same classes
        from fieldstream.detectors import river_models
        print(drift.ADWIN is river_models.ADWIN and anomaly.HalfSpaceTrees is river_models.HalfSpaceTrees)
    """, tmp_path)
    detectors_alerting, scipy_loaded, same_classes = out.split()
    assert detectors_alerting == "2"  # restored drift and HalfSpaceTrees state both see the shift
    assert scipy_loaded == "False"
    assert same_classes == "True"
