"""Importing Great Expectations without the start-up cost of what the gate never runs.

GX imports scipy.stats at start-up for its distribution expectations (KL divergence, two
Kolmogorov-Smirnov tests) and their metrics, none of which expectations/*.yml uses: about
1.1 s of GX's 3.7 s import on a 2-core machine, paid by every gate (each `paritrana run`,
each DAG night's quality_gate task). `load` registers scipy.stats as a lazy module
(the standard library's importlib.util.LazyLoader) before importing GX: GX's
`from scipy import stats` then binds a module that is executed on its first attribute
access, so an expectation that does use it still gets the real scipy.stats, only later.
GX runs in the gate's main thread only: Python 3.11's lazy module is not safe to execute
from two threads at once (CPython gh-114763, mended in later Pythons), and no other thread
of the gate touches it.
"""
from __future__ import annotations

import importlib.util
import sys

# Modules GX imports at start-up that the gate's expectations never reach. Only a module GX
# takes as `from package import module` stays lazy on Python 3.11: a plain `import module`
# of one already in sys.modules reads its __spec__, which runs it (altair, 0.4 s, tried).
DEFERRED = ("scipy.stats",)


def defer(name: str) -> bool:
    """Register `name` as a lazy module unless it is imported already (or not installed);
    returns whether it was deferred."""
    if name in sys.modules:
        return False
    parent, _, child = name.rpartition(".")
    try:
        if parent:
            __import__(parent)
            if name in sys.modules:  # the parent imported it
                return False
        spec = importlib.util.find_spec(name)
    except ImportError:  # not installed: GX's own import then says so
        return False
    if spec is None or spec.loader is None:
        return False
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    if parent:
        setattr(sys.modules[parent], child, module)
    return True


def load():
    """The great_expectations module, imported with DEFERRED deferred."""
    if "great_expectations" not in sys.modules:
        for name in DEFERRED:
            defer(name)
    import great_expectations

    return great_expectations
