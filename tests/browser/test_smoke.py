from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["pysync"])
def test_pysync_imports_in_chromium(selenium):
    import sys

    import pysync

    assert sys.version_info[:2] == (3, 14)
    assert pysync.__version__
