"""The page's wheel is the client only: ``import pysync`` in Chromium loads no server code."""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["pysync"])
def test_import_pysync_loads_no_server_code(selenium):
    import importlib.util
    import sys

    import pysync

    loaded = sorted(name for name in sys.modules if name.startswith("pysync"))
    assert "pysync._replica" in loaded
    assert not [name for name in loaded if name.startswith(("pysync.server", "pysync.cli"))]
    # Not even on disk: the page's wheel leaves pysync/server/ and the command out.
    assert importlib.util.find_spec("pysync.server") is None
    assert importlib.util.find_spec("pysync.cli") is None
    # The client-safe test support stays (the store contract runs in the page).
    import pysync.testing

    assert pysync.testing.indexeddb_factory
    assert importlib.util.find_spec("pysync.testing._dynamo") is None  # CPython only
    assert pysync.__version__
