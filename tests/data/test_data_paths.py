from pathlib import Path

from kdlab.data import default_data_dir


def test_kdlab_data_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("KDLAB_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "mine"


def test_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("KDLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "kdlab" / "data"


def test_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("KDLAB_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == Path(tmp_path) / ".cache" / "kdlab" / "data"
