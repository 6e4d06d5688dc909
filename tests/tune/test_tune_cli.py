"""`mlcls tune` on the command line: listed in --help, light to start, and one line when Optuna is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mlcls.cli import app

runner = CliRunner()


def test_tune_is_a_command_and_its_help_loads_neither_torch_nor_optuna():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mlcls.cli import app\n"
        "for args in (['--help'], ['tune', '--help']):\n"
        "    result = CliRunner().invoke(app, args, env={'COLUMNS': '200'})\n"
        "    assert result.exit_code == 0, args\n"
        "    assert 'tune' in result.stdout\n"
        "heavy = [m for m in ('torch', 'transformers', 'optuna') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_optuna_the_command_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    result = runner.invoke(app, ["tune", "--space", str(tmp_path / "space.yaml")])
    assert result.exit_code == 1
    assert result.stderr.strip() == 'error: mlcls tune needs Optuna: pip install "mlcls[tune]"'


def test_an_unknown_pruner_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["tune", "--space", str(tmp_path / "space.yaml"), "--pruner", "mean"])
    assert result.exit_code == 2 and "mean" in result.output


def test_the_default_storage_url_keeps_odd_characters_of_the_folder(tmp_path):
    """SQLAlchemy reads '?' in a sqlite path as a query and unquotes '%41': the folder is quoted in the URL, and
    the database opens where the study folder is."""
    from sqlalchemy.engine import make_url

    from mlcls.tune.study import storage_url

    for name in ("tune-q?x", "tune-p%41x", "tune-a#b c"):
        url = storage_url(tmp_path / name, None)
        assert make_url(url).database == str(tmp_path / name / "study.db")


def test_a_storage_that_looks_like_a_url_without_slashes_is_refused():
    import pytest

    from mlcls.errors import ConfigError
    from mlcls.tune.study import check_study_name, storage_url

    with pytest.raises(ConfigError, match=r"--storage 'sqlite:/tmp/one\.db': looks like a URL but has no '://'"):
        storage_url(Path("runs"), "sqlite:/tmp/one.db")
    assert storage_url(Path("runs"), "journal.log") == str(Path("journal.log").absolute())
    with pytest.raises(ConfigError, match="at most 200 bytes"):
        check_study_name("x" * 300)
