"""scripts/keyword_engines.py: Whoosh against SQLite FTS5 (and Tantivy where installed)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from kbsearch.content.articles import load_articles

from .conftest import ARTICLES, ROOT, SHARED_EVAL


@pytest.fixture(scope="module")
def engines():
    spec = importlib.util.spec_from_file_location("keyword_engines",
                                                  ROOT / "scripts" / "keyword_engines.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_articles_are_read_as_kbsearch_reads_them(engines):
    read = {a_id: (lang, title) for a_id, lang, title, _ in engines.read_articles(ARTICLES)}
    loaded = load_articles(ARTICLES).articles
    assert read == {a.id: (a.language, a.title) for a in loaded}


@pytest.mark.parametrize("name", ["fts5", "tantivy"])
def test_an_engine_built_from_the_articles_finds_the_right_one(engines, name, tmp_path):
    if name == "tantivy":
        pytest.importorskip("tantivy")
    build, open_engine = engines.ENGINES[name]
    build(ARTICLES, tmp_path / name)
    search = open_engine(tmp_path / name)
    assert "zaehlerstand-melden" in search("Zählerstand melden")[:3]
    assert "router-stoerung-en" in search("router internet connection down")[:5]
    hostile = search('"; DROP TABLE docs; -- OR :* (')  # never a syntax error
    assert isinstance(hostile, list) and "zaehlerstand-melden" in search("Zählerstand")[:3]
    assert search("") == []


def test_fts5_queries_are_any_word_quoted(engines):
    assert engines.fts5_terms('Zähler "kaputt" OR: zähler') == '"zähler" OR "kaputt" OR "or"'
    assert engines.fts5_terms("?!") == ""


def test_overlap_and_percentiles(engines):
    assert engines.overlap_at_10([["a", "b", "c"], ["x"]], [["b", "z"], []]) == 0.5
    figures = engines.percentiles([float(n) for n in range(1, 101)])
    assert figures == {"p50": 50.5, "p95": 96.0, "p99": 100.0}


def test_the_script_compares_whoosh_with_fts5(engines, sample_index, tmp_path, capsys):
    if not (SHARED_EVAL / "stackfaq_en").exists():
        pytest.skip("no evaluation sets in ../shared/eval")
    base = tmp_path / "base"
    base.mkdir()
    (base / "articles").symlink_to(ARTICLES)
    (base / "index").symlink_to(sample_index)
    assert engines.main([str(base), "--engines", "whoosh,fts5,whoosh-blocks", "--queries",
                         "20", "--eval-dir", str(SHARED_EVAL), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["engines"]) == ["whoosh", "fts5", "whoosh-blocks"]
    assert result["queries"] == 20
    # the same index read from Whoosh's blocks alone answers the same
    assert result["engines"]["whoosh-blocks"]["overlap@10_with_whoosh"] == 1.0
    whoosh, fts5 = result["engines"]["whoosh"], result["engines"]["fts5"]
    assert whoosh["new"]["p50"] > 0 and whoosh["index_mb"] > 0
    assert fts5["build_s"] >= 0 and 0 < fts5["overlap@10_with_whoosh"] <= 1
    assert (base / "engines" / "fts5" / "built.json").exists()  # kept for the next run
    with pytest.raises(SystemExit):
        engines.main([str(base), "--engines", "lucene"])
