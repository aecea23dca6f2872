"""docs/results.md is what `python -m bench.results_doc` writes from the committed results files."""

from bench.results_doc import DOC, render


def test_results_document_is_regenerated():
    assert DOC.read_text() == render(), "docs/results.md is stale: run `make results` (python -m bench.results_doc)"
