"""Build, update and open versioned index builds; switch between them atomically.

Layout of the index folder::

    index/
      CURRENT               name of the build that serves (replaced atomically)
      .lock                 held while a build runs
      builds/<version>/     one complete build, never changed after it is published
        manifest.json       model, counts, parameters, content hashes, kbsearch version
        articles.jsonl      article metadata and Markdown, one per line
        chunks.jsonl        chunk → article, heading, text hash
        chunk_vectors.npy   float32 (n_chunks, dim), L2-normalised
        title_vectors.npy   float32 (n_articles, dim), titles embedded as passages
        question_vectors.npy  float32 (n_questions, dim): the editors' questions of the
                            articles (front matter ``questions``), in the order of
                            articles.jsonl, embedded as queries are
        dense.faiss         above the exact limit only (up to it, chunk_vectors.npy is
                            searched as it is): FAISS IVF index over chunk_vectors,
        dense_centroids.npy   with its centroids (n_lists, dim)
        dense_lists.npy       and each chunk's list, int64 (n_chunks,)
        keyword/            Whoosh index, its lexicon.txt and the synonyms.txt it was built with

A build is written to a staging folder and renamed into ``builds/`` when complete; only then
is CURRENT replaced (``os.replace`` is atomic). A failed build removes its staging folder and
leaves CURRENT as it was. Old builds are renamed to ``.removing-*`` before they are deleted;
what a killed build left (those, staging folders, CURRENT's temporary files) goes with the
next build, under the build lock. Unchanged chunks, titles and questions are copied from the
current build instead of being embedded again (:mod:`kbsearch.index.previous`). The keyword
index is copied from the current build and updated when few articles changed (at most
``KEYWORD_UPDATE_SHARE`` of them, the synonyms file ``articles/synonyms.txt`` unchanged),
and written anew otherwise and every ``KEYWORD_UPDATES`` builds, so that the compounds of
unchanged articles are split again by the current lexicon.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbsearch import __version__
from kbsearch.content.analysis import Lexicon
from kbsearch.content.articles import Article, load_articles
from kbsearch.content.synonyms import NO_RULES, SYNONYMS_FILE, Synonyms, load_synonyms
from kbsearch.errors import (
    ArticleError,
    IndexBuildError,
    IndexFormatError,
    IndexNotFoundError,
    SynonymsError,
)
from kbsearch.fileio import atomic_write_text, remove_temp_files, remove_tree
from kbsearch.index.batches import EMBED_BATCH, write_articles
from kbsearch.index.bodies import ArticleBodies, read_articles
from kbsearch.index.dense import DENSE_FILE, load_faiss, write_dense
from kbsearch.index.embedding import Embedder
from kbsearch.index.facets import Facets, translation_families
from kbsearch.index.keyword import (
    BM25_B,
    BM25_K1,
    FIELD_BOOSTS,
    KeywordIndex,
    build_keyword_index,
    read_lexicon,
    update_keyword_index,
)
from kbsearch.index.previous import (
    CurrentArticles,
    PreviousBuild,
    embed_missing,
    read_current_articles,
    read_jsonl,
)

# The build format this kbsearch writes and reads. Bump it whenever a build's files change
# meaning or layout (format 3: the keyword index's lexicon in lexicon.txt, its schema made
# on open instead of unpickled; format 4: editors' questions in question_vectors.npy and
# the articles' metadata, the synonyms in keyword/synonyms.txt).
FORMAT = 4
CURRENT = "CURRENT"
BUILDS = "builds"
REMOVING = ".removing-"  # the name prefix of an old build while it is deleted
KEYWORD_UPDATE_SHARE = 0.1  # the keyword index is updated when at most this share changed ...
KEYWORD_UPDATES = 20  # ... and written anew at least every this many builds


@dataclass(frozen=True)
class BuildReport:
    """What a build did: its version, counts, reuse and the articles it skipped."""

    version: str
    path: Path
    articles: int
    chunks: int
    embedded: int
    reused: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    errors: tuple[ArticleError, ...]
    seconds: float
    questions: int = 0
    synonyms_changed: bool = False


def current_version(index_dir: Path) -> str | None:
    """Return the name of the current build, or None when there is none."""
    try:
        name = (index_dir / CURRENT).read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    return name if name and (index_dir / BUILDS / name / "manifest.json").exists() else None


def list_builds(index_dir: Path) -> list[str]:
    """Return the names of all complete builds, oldest first."""
    builds = index_dir / BUILDS
    if not builds.is_dir():
        return []
    return sorted(p.name for p in builds.iterdir() if (p / "manifest.json").exists())


@contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBuildError(
                f"another build of {index_dir} is running; try again when it has finished"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_version(articles: Sequence[Article]) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256("".join(a.content_hash for a in articles).encode()).hexdigest()
    return f"{stamp}-{digest[:8]}"


def _switch_current(index_dir: Path, version: str) -> None:
    """Point CURRENT at a build with an atomic rename."""
    atomic_write_text(index_dir / CURRENT, version + "\n")


def _prune(index_dir: Path, keep: int) -> None:
    current = current_version(index_dir)
    builds = [b for b in list_builds(index_dir) if b != current]
    for name in builds[: max(0, len(builds) - (keep - 1))]:
        remove_tree(index_dir / BUILDS / name, REMOVING)


def model_description(embedder: Embedder) -> dict[str, object]:
    """Describe the embedding model; vectors are reused only under an equal description."""
    return {
        "name": embedder.name,
        "dimension": embedder.dimension,
        "query_prompt": embedder.query_prompt,
        "passage_prompt": embedder.passage_prompt,
    }


def build_index(
    articles_dir: Path,
    index_dir: Path,
    embedder: Embedder,
    chunk_tokens: int = 256,
    exact_limit: int = 50_000,
    languages: Sequence[str] = ("de", "en"),
    strict: bool = False,
    keep_builds: int = 3,
    progress: bool = False,
) -> BuildReport:
    """Build a new index version from the articles (and their synonyms file); make it current.

    Raises IndexBuildError (strict mode with invalid articles, no valid article, an invalid
    synonyms file, or any failure while building); the current build then stays as it was.
    """
    started = time.perf_counter()
    current = current_articles(index_dir)
    loaded = load_articles(articles_dir, languages, current.by_file())
    try:
        synonyms = load_synonyms(articles_dir / SYNONYMS_FILE)
    except SynonymsError as exc:
        raise IndexBuildError(f"{exc}; nothing built, the current index is unchanged") from None
    if strict and loaded.errors:
        raise IndexBuildError(
            f"{len(loaded.errors)} invalid article(s), nothing built (--strict):\n"
            + "\n".join(f"  {e}" for e in loaded.errors)
        )
    if not loaded.articles:
        detail = "".join(f"\n  {e}" for e in loaded.errors)
        raise IndexBuildError(f"no valid article in {articles_dir}; nothing built{detail}")
    return build_from_articles(
        list(loaded.articles), index_dir, embedder, chunk_tokens=chunk_tokens,
        exact_limit=exact_limit, errors=loaded.errors, keep_builds=keep_builds,
        progress=progress, started=started, synonyms=synonyms, current=current,
    )


def build_from_articles(
    articles: list[Article],
    index_dir: Path,
    embedder: Embedder,
    chunk_tokens: int = 256,
    exact_limit: int = 50_000,
    errors: Sequence[ArticleError] = (),
    keep_builds: int = 3,
    progress: bool = False,
    started: float | None = None,
    synonyms: Synonyms = NO_RULES,
    current: CurrentArticles | None = None,
    embed_batch: int = EMBED_BATCH,
    on_done: Callable[[int], None] | None = None,
) -> BuildReport:
    """Build a new index version from parsed articles (and synonyms) and make it current.

    ``current`` is the current build's articles as read before (:func:`current_articles`);
    they spare reading them again while that build is still the current one. The articles
    are written a batch at a time (:mod:`kbsearch.index.batches`): at most
    ``embed_batch`` new chunk texts are embedded at once, and ``on_done`` is told how
    many articles are done as the batches go.
    """
    started = time.perf_counter() if started is None else started
    with _build_lock(index_dir):
        builds = index_dir / BUILDS
        builds.mkdir(parents=True, exist_ok=True)
        for dead in [*builds.glob(".staging-*"), *builds.glob(REMOVING + "*")]:  # from kills
            shutil.rmtree(dead, ignore_errors=True)
        remove_temp_files(index_dir / CURRENT)
        version = current_version(index_dir)
        cache = PreviousBuild(None if version is None else builds / version,
                              model_description(embedder), FORMAT, current)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=builds))
        try:
            report = _write_build(
                staging, articles, errors, embedder, cache, chunk_tokens,
                exact_limit, progress, started, synonyms, embed_batch, on_done,
            )
            final = builds / report.version
            staging.rename(final)
            _switch_current(index_dir, report.version)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, IndexBuildError | KeyboardInterrupt):
                raise
            if isinstance(exc, Exception):
                raise IndexBuildError(
                    f"index build failed, the current index is unchanged: {exc}"
                ) from exc
            raise
        _prune(index_dir, keep_builds)
    return dataclasses.replace(report, path=final)


def _write_questions(
    staging: Path, articles: Sequence[Article], embedder: Embedder, cache: PreviousBuild
) -> tuple[int, int]:
    """Embed the editors' questions as queries (new ones only) and save them.

    Returns how many questions the build has and how many of them were embedded.
    """
    vectors, embedded = embed_missing(
        [q for a in articles for q in a.questions], cache.questions.get,
        embedder.embed_queries, embedder.dimension,
    )
    np.save(staging / "question_vectors.npy", vectors)
    return len(vectors), embedded


def _write_keyword(
    staging: Path, articles: Sequence[Article], synonyms: Synonyms, cache: PreviousBuild,
    touched: set[str],
) -> tuple[Lexicon, dict[str, object]]:
    """Write the keyword index with the German articles' lexicon and the synonyms.

    The current build's index is updated (``touched``, the ids of added, changed and
    removed articles, deleted and the current ones of them added) when it has the same
    synonyms, at most KEYWORD_UPDATE_SHARE of the articles were touched and it has had
    fewer than KEYWORD_UPDATES updates since it was written anew; otherwise the index
    is written anew. Returns the lexicon and the manifest's description of the index.

    An updated index keeps the current lexicon and adds the words of the touched articles
    (the lexicon of all articles took most of a reindex at 10k articles); words that only
    a changed or removed article had stay until the index is written anew.
    """
    folder = staging / "keyword"
    if (
        cache.keyword is not None
        and cache.synonyms == synonyms.digest()
        and len(touched) <= KEYWORD_UPDATE_SHARE * len(articles)
        and cache.keyword_updates + 1 < KEYWORD_UPDATES
    ):
        changed = [a for a in articles if a.id in touched]
        lexicon = Lexicon(read_lexicon(cache.keyword) | _lexicon(changed).words)
        update_keyword_index(cache.keyword, folder, sorted(touched), changed, lexicon,
                             synonyms)
        return lexicon, {"written": "updated", "updates": cache.keyword_updates + 1}
    lexicon = _lexicon(articles)
    build_keyword_index(folder, articles, lexicon, synonyms)
    return lexicon, {"written": "anew", "updates": 0}


def _lexicon(articles: Sequence[Article]) -> Lexicon:
    """Return the vocabulary of the German articles' titles, tags and bodies."""
    return Lexicon.from_texts(
        f"{a.title}\n{' '.join(a.tags)}\n{a.body}" for a in articles if a.language == "de"
    )


def _write_build(
    staging: Path,
    articles: list[Article],
    errors: Sequence[ArticleError],
    embedder: Embedder,
    cache: PreviousBuild,
    chunk_tokens: int,
    exact_limit: int,
    progress: bool,
    started: float,
    synonyms: Synonyms,
    embed_batch: int = EMBED_BATCH,
    on_done: Callable[[int], None] | None = None,
) -> BuildReport:
    """Embed what is new, write every file of a build into ``staging``; return its report."""
    budget = min(chunk_tokens, embedder.max_tokens)
    written = write_articles(staging, articles, cache, embedder, budget, embed_batch,
                             on_done, progress)
    chunk_vectors, embedded = written.chunk_vectors, written.embedded
    questions, embedded_questions = _write_questions(staging, articles, embedder, cache)
    dense = write_dense(staging, chunk_vectors, exact_limit, cache.centroids,
                        cache.lists_of(written.source))
    hashes = {a.id: a.content_hash for a in articles}
    old = cache.hashes
    added = tuple(sorted(set(hashes) - set(old)))
    removed = tuple(sorted(set(old) - set(hashes)))
    changed = tuple(sorted(a for a in hashes if a in old and old[a] != hashes[a]))
    lexicon, keyword = _write_keyword(staging, articles, synonyms, cache,
                                      {*added, *removed, *changed})
    version = _new_version(articles)
    seconds = time.perf_counter() - started
    manifest = {
        "format": FORMAT,
        "version": version,
        "kbsearch_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model": model_description(embedder),
        "articles": len(articles),
        "chunks": len(chunk_vectors),
        "dense_index": dense.pop("kind"),
        "dense": dense,
        "keyword_index": keyword,
        "parameters": {
            "chunk_tokens": budget,
            "exact_limit": exact_limit,
            "bm25_k1": BM25_K1,
            "bm25_b": BM25_B,
            "field_boosts": FIELD_BOOSTS,
            "lexicon_words": len(lexicon.words),
        },
        "embedded_chunks": embedded,
        "reused_chunks": len(chunk_vectors) - embedded,
        "questions": questions,
        "embedded_questions": embedded_questions,
        "synonyms": {"rules": len(synonyms.rules), "sha256": synonyms.digest()},
        "skipped_articles": [str(e) for e in errors],
        "content_hashes": hashes,
        "build_seconds": round(seconds, 3),
    }
    (staging / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), "utf-8"
    )
    return BuildReport(
        version=version, path=staging, articles=len(articles), chunks=len(chunk_vectors),
        embedded=embedded, reused=len(chunk_vectors) - embedded, added=added, changed=changed,
        removed=removed, errors=tuple(errors), seconds=seconds,
        questions=questions,
        synonyms_changed=cache.synonyms is not None and cache.synonyms != synonyms.digest(),
    )


@dataclass(frozen=True)
class LoadedIndex:
    """A published build, opened read-only for searching.

    ``articles`` hold the metadata of the articles, their ``body`` empty: :meth:`article`
    returns an article with its Markdown (read from the build, see
    :mod:`kbsearch.index.bodies`).
    """

    version: str
    path: Path
    manifest: dict
    articles: tuple[Article, ...]
    bodies: ArticleBodies
    positions: dict[str, int]
    chunk_article: np.ndarray
    chunk_starts: np.ndarray
    chunk_vectors: np.ndarray
    title_vectors: np.ndarray
    question_article: np.ndarray
    question_vectors: np.ndarray
    dense: object
    keyword: KeywordIndex
    keyword_docnums: np.ndarray  # each article's document number in the keyword index
    families: dict[str, tuple[int, ...]]  # translation family -> its articles' positions
    facets: Facets  # the articles of each language, category and tag, for filters

    def article(self, position: int) -> Article:
        """Return the article at a position with its Markdown."""
        return dataclasses.replace(self.articles[position], body=self.bodies.body(position))

    def close(self) -> None:
        """Release the keyword index's and the article texts' files."""
        self.keyword.close()
        self.bodies.close()


def check_format(manifest: dict, version: str) -> None:
    """Raise IndexFormatError unless a build's manifest says this kbsearch's format."""
    found = manifest.get("format")
    if found != FORMAT:
        built_by = manifest.get("kbsearch_version", "an unknown version")
        raise IndexFormatError(
            f"index build {version} was built by kbsearch {built_by} with format {found}; "
            f"this kbsearch ({__version__}) reads format {FORMAT}: run 'kbsearch index' "
            "to build it again"
        )


def current_articles(index_dir: Path) -> CurrentArticles:
    """Return the current build's articles and their records, so that a new build does not
    parse unchanged files or encode their records again (see :class:`CurrentArticles`)."""
    version = current_version(index_dir)
    return read_current_articles(None if version is None else index_dir / BUILDS / version,
                                 FORMAT)


def open_index(index_dir: Path, version: str | None = None) -> LoadedIndex:
    """Open the current build (or a named one); raise IndexNotFoundError if there is none."""
    version = version or current_version(index_dir)
    if version is None:
        raise IndexNotFoundError(
            f"no index in {index_dir}; build one with 'kbsearch index'"
        )
    folder = index_dir / BUILDS / version
    if not (folder / "manifest.json").exists():
        raise IndexNotFoundError(f"index build {version} not found in {index_dir}")
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    check_format(manifest, version)
    articles, bodies = read_articles(folder / "articles.jsonl")
    positions = {article.id: i for i, article in enumerate(articles)}
    chunk_article = np.array([positions[c["article_id"]]  # chunk texts stay on disk
                              for c in read_jsonl(folder / "chunks.jsonl")], dtype=np.int64)
    if np.any(np.diff(chunk_article) < 0):
        raise IndexNotFoundError(f"index build {version} is damaged: chunks out of order")
    keyword = KeywordIndex(folder / "keyword")
    return LoadedIndex(
        version=version,
        path=folder,
        manifest=manifest,
        articles=articles,
        bodies=bodies,
        positions=positions,
        chunk_article=chunk_article,
        chunk_starts=np.searchsorted(chunk_article, np.arange(len(articles) + 1)),
        chunk_vectors=np.load(folder / "chunk_vectors.npy", mmap_mode="r"),
        title_vectors=np.load(folder / "title_vectors.npy", mmap_mode="r"),  # shared pages
        question_article=np.array(
            [p for p, article in enumerate(articles) for _ in article.questions], dtype=np.int64
        ),
        question_vectors=np.load(folder / "question_vectors.npy"),
        dense=(load_faiss(folder / DENSE_FILE)
               if manifest.get("dense_index") in ("hnsw", "ivf") else None),
        keyword=keyword,
        keyword_docnums=keyword.docnums_of(a.id for a in articles),
        families=translation_families(articles),
        facets=Facets(articles),
    )

