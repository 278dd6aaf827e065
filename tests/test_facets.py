"""A filter's mask from the build's groups equals testing every article."""

import itertools

import numpy as np

from kbsearch.content.articles import load_articles
from kbsearch.index.facets import Facets

from .conftest import ARTICLES


def test_masks_select_the_articles_a_filter_wants():
    articles = list(load_articles(ARTICLES).articles)
    facets = Facets(articles)
    languages = [None, "de", "en", "fr"]
    categories = [None, *sorted({a.category for a in articles})[:3], "nirgends"]
    tags = sorted({t for a in articles for t in a.tags})
    tag_sets = [(), (tags[0],), (tags[0], tags[1]), ("gibt-es-nicht",),
                *[(t,) for t in tags[2:8]]]
    selected = 0
    for language, category, wanted in itertools.product(languages, categories, tag_sets):
        expected = np.array([
            (not language or a.language == language)
            and (not category or a.category == category)
            and all(t in a.tags for t in wanted) for a in articles])
        mask = facets.mask(language, category, wanted)
        assert mask.dtype == bool and np.array_equal(mask, expected), (language, category,
                                                                      wanted)
        selected += int(mask.sum())
    assert selected > 0
    assert facets.mask().all() and len(facets.mask()) == len(articles)
