"""The examples check their output directories before the run: a path that is a file stops
the script at once with the option's name, instead of a traceback after training."""

import pytest

from examples.save_target import check_output_dir, check_save_dir
from examples.startup_search import search as startup_search


def test_output_dirs_that_are_files_are_named(tmp_path):
    a_file = tmp_path / "cache.bin"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as info:
        check_output_dir(str(a_file), "--cache-dir")
    assert (
        str(info.value) == f"error: --cache-dir {a_file} is not a directory; pass a directory path"
    )
    with pytest.raises(SystemExit) as info:
        check_output_dir(str(a_file / "index"), "--index-dir")
    assert str(info.value) == (
        f"error: --index-dir {a_file / 'index'} is not a directory ({a_file} is a file); "
        "pass a directory path"
    )
    for fine in (None, str(tmp_path), str(tmp_path / "new" / "deeper")):
        check_output_dir(fine, "--cache-dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.bin"]  # nothing created


def test_save_dir_errors_name_the_option(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "head").mkdir()
    with pytest.raises(SystemExit) as info:
        check_save_dir(str(project), "--out")
    assert str(info.value).startswith(f"error: --out {project}: refusing to save into ")
    assert "['head']" in str(info.value)
    check_save_dir(str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_search_refuses_an_index_dir_that_is_a_file_before_loading(tmp_path, monkeypatch):
    a_file = tmp_path / "index"
    a_file.write_text("x")
    monkeypatch.setattr(startup_search, "load_model_described", None)  # never reached
    with pytest.raises(SystemExit) as info:
        startup_search.main(["a query", "--index-dir", str(a_file)])
    assert str(info.value).startswith(f"error: --index-dir {a_file} is not a directory")


def test_data_generators_refuse_outputs_that_cannot_be_written(tmp_path, capsys):
    from examples.quick_start_data import generate
    from examples.startup_search import make_sample_dataset

    a_file = tmp_path / "afile"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as info:
        generate.main(["--out-dir", str(a_file)])
    assert str(info.value).startswith(f"error: --out-dir {a_file} is not a directory")
    with pytest.raises(SystemExit):
        make_sample_dataset.main(["--output", str(tmp_path)])
    assert f"--output {tmp_path} is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no temp file left behind
    out = tmp_path / "startups.jsonl"
    make_sample_dataset.main(["--output", str(out), "--size", "3"])
    assert len(out.read_text().splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "startups.jsonl"]
