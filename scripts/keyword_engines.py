#!/usr/bin/env python
"""Keyword search engines compared on one generated knowledge base: Whoosh (what kbsearch
uses), SQLite FTS5 (in Python's standard library) and Tantivy (where its wheel is
installed: ``.venv/bin/pip install tantivy``; not a kbsearch dependency).

Usage: scripts/keyword_engines.py BASE [--engines whoosh,fts5,tantivy] [--queries 300]
       [--workdir DIR] [--json]

``whoosh-blocks`` is kbsearch's keyword index searched without the postings its build
stored decoded (every posting read from Whoosh's blocks, as before they existed).

BASE is a size folder of ``scripts/bench.py --workdir DIR`` (``DIR/100000``): its
``articles/`` are indexed into each other engine (kept under ``--workdir``, default
``BASE/engines``, and reused), and its current build's Whoosh keyword index is searched as
kbsearch searches it (``KeywordIndex.search``, both languages, top 100). Each engine gets
the same 300 mixed German and English queries from ../shared/eval twice: first with
nothing cached (as new questions come in), then again (as repeated ones do). It reports
per engine the p50/p95/p99 of each pass, the time to open, the index size, the resident
memory the open index added, the build time (for the engines built here), and how many
of Whoosh's top 10 the engine also ranks in its top 10.

The other engines use their own analysis (a German or English stemmer per field, as
close as they offer to kbsearch's); Whoosh's scores are kbsearch's BM25F. So the overlap
says whether an engine answers a comparable question, not that it ranks the same.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_kb import load_sources, mixed_queries  # noqa: E402

from kbsearch.config import load_settings  # noqa: E402
from kbsearch.index.builds import BUILDS, current_version  # noqa: E402
from kbsearch.index.keyword import KeywordIndex  # noqa: E402

TOP = 100  # hits asked of each engine, as kbsearch's KBSEARCH_CANDIDATES
TITLE_BOOST = 2.0
LANGUAGES = ("de", "en")
BATCH = 10_000  # articles added to an engine at a time
FRONT = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.S)
Search = Callable[[str], list[str]]  # a query → article ids, best first


def read_articles(folder: Path) -> Iterator[tuple[str, str, str, str]]:
    """Yield (id, language, title, body) of every article file under ``folder``.

    The bench writes plain front matter, so its keys are read line by line: parsing YAML
    for a million files would take longer than indexing them.
    """
    for path in sorted(folder.rglob("*.md")):
        match = FRONT.match(path.read_text("utf-8"))
        if match is None:
            continue
        meta = dict(line.split(": ", 1) for line in match.group(1).splitlines()
                    if ": " in line and not line.startswith(" "))
        title = meta.get("title", "").strip("'\"")
        yield meta["id"], meta.get("language", "de"), title, match.group(2)


def rss_mb() -> float:
    """Return this process's resident memory in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def folder_mb(folder: Path) -> float:
    """Return the size of the files under ``folder`` in MB."""
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)


def fts5_terms(query: str) -> str:
    """Return an FTS5 MATCH expression: any of the query's words (quoted, so never syntax)."""
    words = re.findall(r"\w+", query.lower())
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


def build_fts5(articles: Path, folder: Path) -> None:
    """Index the articles into an FTS5 table (title and body per language)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "fts5.sqlite3")
    columns = ", ".join(f"{field}_{lang}" for lang in LANGUAGES for field in ("title", "body"))
    db.execute(f"CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, {columns}, "
               "tokenize = 'unicode61 remove_diacritics 2')")
    rows: list[tuple[str, ...]] = []
    for article_id, lang, title, body in read_articles(articles):
        values = {f"{f}_{lg}": "" for lg in LANGUAGES for f in ("title", "body")}
        values[f"title_{lang}"], values[f"body_{lang}"] = title, body
        rows.append((article_id, *values.values()))
        if len(rows) == BATCH:
            db.executemany(f"INSERT INTO docs VALUES ({', '.join('?' * 5)})", rows)
            rows.clear()
    db.executemany(f"INSERT INTO docs VALUES ({', '.join('?' * 5)})", rows)
    db.execute("INSERT INTO docs(docs) VALUES ('optimize')")
    db.commit()
    db.close()


def open_fts5(folder: Path) -> Search:
    """Return a search over the FTS5 table: BM25, titles weighted TITLE_BOOST."""
    db = sqlite3.connect(folder / "fts5.sqlite3", check_same_thread=False)
    weights = ", ".join(["0", *[str(TITLE_BOOST), "1"] * len(LANGUAGES)])
    sql = (f"SELECT id FROM docs WHERE docs MATCH ? ORDER BY bm25(docs, {weights}) "
           f"LIMIT {TOP}")

    def search(query: str) -> list[str]:
        expression = fts5_terms(query)
        return [row[0] for row in db.execute(sql, (expression,))] if expression else []

    return search


def _tantivy_schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    for lang in LANGUAGES:
        for field in ("title", "body"):
            builder.add_text_field(f"{field}_{lang}", tokenizer_name=f"stem_{lang}")
    return builder.build()


def _tantivy_index(folder: Path, create: bool) -> Any:
    """Return a Tantivy index with a stemming analyzer registered per language."""
    import tantivy

    index = tantivy.Index(_tantivy_schema(), path=str(folder)) if create else \
        tantivy.Index.open(str(folder))
    for lang, stemmer in (("de", "german"), ("en", "english")):
        analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
                    .filter(tantivy.Filter.lowercase())
                    .filter(tantivy.Filter.stemmer(stemmer)).build())
        index.register_tokenizer(f"stem_{lang}", analyzer)
    return index


def build_tantivy(articles: Path, folder: Path) -> None:
    """Index the articles into Tantivy (title and body per language)."""
    import tantivy

    folder.mkdir(parents=True, exist_ok=True)
    index = _tantivy_index(folder, create=True)
    writer = index.writer(heap_size=500_000_000, num_threads=1)
    for article_id, lang, title, body in read_articles(articles):
        writer.add_document(tantivy.Document(
            id=article_id, **{f"title_{lang}": title, f"body_{lang}": body}))
    writer.commit()
    writer.wait_merging_threads()


def open_tantivy(folder: Path) -> Search:
    """Return a search over the Tantivy index: BM25, any query word, titles boosted."""
    index = _tantivy_index(folder, create=False)
    index.reload()
    searcher = index.searcher()
    fields = [f"{field}_{lang}" for lang in LANGUAGES for field in ("title", "body")]
    boosts = {f"title_{lang}": TITLE_BOOST for lang in LANGUAGES}

    def search(query: str) -> list[str]:
        words = " ".join(re.findall(r"\w+", query))
        if not words:
            return []
        parsed, _errors = index.parse_query_lenient(words, fields, field_boosts=boosts)
        hits = searcher.search(parsed, TOP).hits
        return [searcher.doc(address)["id"][0] for _score, address in hits]

    return search


def open_whoosh(base: Path, decoded: bool = True) -> Search:
    """Return kbsearch's keyword search over the base's current build (``decoded``: with
    the long postings the build stored decoded; without: from Whoosh's blocks alone)."""
    index_dir = base / "index"
    keyword = KeywordIndex(index_dir / BUILDS / str(current_version(index_dir)) / "keyword",
                           decoded=decoded)
    return lambda query: keyword.search(query, TOP)[0]


WHOOSH = ("whoosh", "whoosh-blocks")  # kbsearch's keyword index: as it searches, blocks only
ENGINES: dict[str, tuple[Callable[[Path, Path], None] | None, Callable[[Path], Search]]] = {
    "fts5": (build_fts5, open_fts5),
    "tantivy": (build_tantivy, open_tantivy),
}


def percentiles(times_ms: Sequence[float]) -> dict[str, float]:
    """Return p50, p95 and p99 of some times."""
    ordered = sorted(times_ms)
    pick = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))]  # noqa: E731
    return {"p50": round(statistics.median(ordered), 2), "p95": round(pick(0.95), 2),
            "p99": round(pick(0.99), 2)}


def measure(search: Search, queries: Sequence[str]) -> tuple[dict[str, Any], list[list[str]]]:
    """Search every query twice; return the latency figures and the first pass's answers."""
    figures: dict[str, Any] = {}
    answers: list[list[str]] = []
    for name in ("new", "repeated"):
        times = []
        for query in queries:
            started = time.perf_counter()
            found = search(query)
            times.append((time.perf_counter() - started) * 1000)
            if name == "new":
                answers.append(found)
        figures[name] = percentiles(times)
    return figures, answers


def overlap_at_10(answers: list[list[str]], reference: list[list[str]]) -> float:
    """Return the mean share of the reference's top 10 that an engine's top 10 holds."""
    shares = [len(set(a[:10]) & set(r[:10])) / len(r[:10])
              for a, r in zip(answers, reference, strict=True) if r]
    return round(statistics.fmean(shares), 3) if shares else 0.0


def run_engine(name: str, base: Path, workdir: Path, queries: Sequence[str]
               ) -> tuple[dict[str, Any], list[list[str]]]:
    """Build (unless kept) and open one engine, then measure it."""
    figures: dict[str, Any] = {}
    if name in WHOOSH:
        folder = base / "index"
        opener: Callable[[], Search] = lambda: open_whoosh(  # noqa: E731
            base, decoded=name == "whoosh")
    else:
        build, open_engine = ENGINES[name]
        folder = workdir / name
        done = folder / "built.json"
        if not done.exists():
            started = time.perf_counter()
            assert build is not None
            build(base / "articles", folder)
            done.write_text(json.dumps({"build_s": round(time.perf_counter() - started, 1)}))
        figures.update(json.loads(done.read_text()))
        opener = lambda: open_engine(folder)  # noqa: E731
    before = rss_mb()
    started = time.perf_counter()
    search = opener()
    figures["open_s"] = round(time.perf_counter() - started, 2)
    measured, answers = measure(search, queries)
    figures.update(measured)
    figures["rss_added_mb"] = round(rss_mb() - before, 1)
    figures["index_mb"] = folder_mb(folder if name not in WHOOSH else
                                    folder / BUILDS / str(current_version(folder)) / "keyword")
    return figures, answers


def main(argv: Sequence[str] | None = None) -> int:
    """Compare the engines on one base; print JSON or a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("--engines", default="whoosh,fts5,tantivy")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-dir", type=Path,
                        default=Path(__file__).resolve().parent.parent.parent / "shared" / "eval")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in WHOOSH and n not in ENGINES]
    if unknown:
        parser.error(f"--engines: unknown {', '.join(unknown)} "
                     "(whoosh, whoosh-blocks, fts5, tantivy)")
    if "tantivy" in names:
        try:
            import tantivy  # noqa: F401
        except ImportError:
            print("keyword_engines: tantivy is not installed, left out", file=sys.stderr)
            names.remove("tantivy")
    queries = mixed_queries(load_sources(load_settings().articles, args.eval_dir),
                            args.queries, args.seed)
    workdir = args.workdir or args.base / "engines"
    result: dict[str, Any] = {"base": str(args.base), "queries": len(queries), "engines": {}}
    reference: list[list[str]] | None = None
    for name in sorted(names, key=lambda n: n != "whoosh"):
        print(f"keyword_engines: {name} ...", file=sys.stderr, flush=True)
        figures, answers = run_engine(name, args.base, workdir, queries)
        if name == "whoosh":
            reference = answers
        elif reference is not None:
            figures["overlap@10_with_whoosh"] = overlap_at_10(answers, reference)
        result["engines"][name] = figures
    if args.json:
        print(json.dumps(result))
    else:
        print("| engine | new p50 / p95 / p99 ms | repeated p50 / p99 ms | open s | index MB "
              "| RSS added MB | build s | top-10 overlap with Whoosh |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for name, f in result["engines"].items():
            new, again = f["new"], f["repeated"]
            print(f"| {name} | {new['p50']} / {new['p95']} / {new['p99']} | {again['p50']} / "
                  f"{again['p99']} | {f['open_s']} | {f['index_mb']} | {f['rss_added_mb']} | "
                  f"{f.get('build_s', '-')} | {f.get('overlap@10_with_whoosh', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
