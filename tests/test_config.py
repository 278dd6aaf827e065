from pathlib import Path

import pytest

from kbsearch.config import SETTINGS, load_settings
from kbsearch.errors import ConfigError

from .conftest import ROOT


def test_defaults_and_environment():
    settings = load_settings(environ={"KBSEARCH_MAX_K": "50", "KBSEARCH_LANGUAGES": "de"})
    assert settings.max_k == 50
    assert settings.languages == ("de",)
    assert settings.index == Path("index")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KBSEARCH_MAX_K", "0"), ("KBSEARCH_MAX_K", "ten"), ("KBSEARCH_LANGUAGES", "fr"),
     ("KBSEARCH_MIN_PROBABILITY", "2")],
)
def test_bad_values_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings(environ={variable: value})


def test_overrides_win_and_unknown_overrides_fail():
    assert load_settings(environ={}, max_k=7).max_k == 7
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings(environ={}, colour="blue")


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text("utf-8")
    missing = [s.env for s in SETTINGS if s.env not in readme]
    assert missing == []
