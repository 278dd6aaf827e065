from pathlib import Path

import pytest

from kbsearch.config import SETTINGS, load_settings
from kbsearch.errors import ConfigError

from .conftest import ROOT


def test_defaults_and_environment():
    settings = load_settings(environ={"KBSEARCH_MAX_K": "50", "KBSEARCH_LANGUAGES": "de"})
    assert settings.max_k == 50
    assert settings.languages == ("de",)
    assert settings.index == ROOT / "index"


def test_paths_resolve_against_the_project_folder_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"KBSEARCH_FEEDBACK_DB": "elsewhere/f.sqlite3",
                                      "KBSEARCH_KEYS_FILE": str(tmp_path / "keys.json")})
    assert settings.home == ROOT
    assert settings.articles == ROOT / "articles" and settings.index == ROOT / "index"
    assert settings.model == str(ROOT / "models" / "multilingual-e5-small")
    assert settings.feedback_db == ROOT / "elsewhere" / "f.sqlite3"  # relative: at home
    assert settings.keys_file == tmp_path / "keys.json"  # absolute: as given
    assert load_settings(environ={}, index=Path("mine")).index == Path("mine")  # options


def test_kbsearch_home_moves_every_relative_path(tmp_path):
    (tmp_path / "models" / "own").mkdir(parents=True)
    settings = load_settings(environ={"KBSEARCH_HOME": str(tmp_path),
                                      "KBSEARCH_MODEL": "models/own",
                                      "KBSEARCH_WEIGHTS": "not/there.json"})
    assert settings.home == tmp_path
    assert settings.channels_db == tmp_path / "data" / "channels.sqlite3"
    assert settings.judgments == tmp_path / "articles" / "judgments.tsv"
    assert settings.model == str(tmp_path / "models" / "own")
    assert settings.weights == "not/there.json"  # no such file at home: left as written
    named = load_settings(environ={"KBSEARCH_HOME": str(tmp_path),
                                   "KBSEARCH_MODEL": "intfloat/multilingual-e5-small"})
    assert named.model == "intfloat/multilingual-e5-small"  # a model name stays a name


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
