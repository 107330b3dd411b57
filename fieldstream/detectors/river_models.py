"""The River models the detectors use, imported without the SciPy River's packages pull in.

`river.drift`, `river.anomaly` and `river.tree` import every model of their family in
their `__init__`, and some of those import SciPy at once (KSWIN, the Gaussian scorer,
the tree splitters). fieldstream runs none of them, yet SciPy made up 75 MB of every
worker's resident memory (docs/BENCHMARKS.md). So the modules that define the models we
use are imported with those packages' `__init__` skipped: a bare package object stands
in while they load, and is taken away afterwards, so a later `import river.drift`
anywhere runs the real `__init__` as usual (and finds these modules already loaded).

Pickles of detector state name the defining modules (`river.drift.adwin`, ...), which
stay in `sys.modules`, so restoring state needs no package `__init__` either. Should a
River release move these modules, the ordinary imports are used and a debug line says so.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING

log = logging.getLogger(__name__)

# Packages whose __init__ imports SciPy, and the modules the detectors need from them.
EAGER_PACKAGES = ("river.drift", "river.anomaly", "river.tree")
MODULES = ("river.drift.adwin", "river.drift.page_hinkley", "river.anomaly.hst", "river.anomaly.filter")


def import_skipping_inits(names: Iterable[str], packages: Iterable[str]) -> list[ModuleType]:
    """Import `names`, with each of `packages` not yet imported standing in as a bare package."""
    stand_ins: dict[str, ModuleType] = {}
    for package in packages:
        if package not in sys.modules:
            spec = importlib.util.find_spec(package)
            if spec is None:
                raise ImportError(f"no package {package}")
            stand_ins[package] = sys.modules[package] = importlib.util.module_from_spec(spec)
    try:
        return [importlib.import_module(name) for name in names]
    finally:
        for package, stand_in in stand_ins.items():
            if sys.modules.get(package) is stand_in:
                del sys.modules[package]
            parent, _, child = package.rpartition(".")
            # Importing a submodule set the stand-in as an attribute of its parent package.
            if getattr(sys.modules.get(parent), child, None) is stand_in:
                delattr(sys.modules[parent], child)


def _load() -> list[ModuleType]:
    try:
        return import_skipping_inits(MODULES, EAGER_PACKAGES)
    except (ImportError, AttributeError) as e:
        log.debug("river: importing %s through their packages (%s)", ", ".join(MODULES), e)
        return [importlib.import_module(name) for name in MODULES]


if TYPE_CHECKING:
    from river.anomaly import HalfSpaceTrees, QuantileFilter
    from river.drift import ADWIN, PageHinkley
else:
    _adwin, _page_hinkley, _hst, _filter = _load()
    ADWIN = _adwin.ADWIN
    PageHinkley = _page_hinkley.PageHinkley
    HalfSpaceTrees = _hst.HalfSpaceTrees
    QuantileFilter = _filter.QuantileFilter

__all__ = ["ADWIN", "HalfSpaceTrees", "PageHinkley", "QuantileFilter"]
