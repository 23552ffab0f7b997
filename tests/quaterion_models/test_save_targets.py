"""Saving never strands, moves or loses the user's files: real symbolic links, folders that are
not servables, read-only folders (in a child process that cannot bypass permissions, as root
would) and two processes saving into one path at once."""

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from quaterion_models import SimilarityModel
from quaterion_models.heads import GatedHead
from quaterion_models.utils import directory_swap
from tests.quaterion_models.file_tools import lock_held_by_another_thread
from tests.quaterion_models.toy_encoders import LinearEncoder

REPO_ROOT = Path(__file__).resolve().parents[2]


def _child_env() -> dict:
    path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _model(gate: float) -> SimilarityModel:
    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    with torch.no_grad():
        model.head.gates.fill_(gate)
    return model


def _gates(path: Path) -> torch.Tensor:
    return SimilarityModel.load(str(path)).head.gates.detach()


def _snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def test_save_through_a_symlink_writes_where_it_points_and_keeps_the_link(tmp_path):
    _model(0.1).save(str(tmp_path / "v3"))
    (tmp_path / "v3" / "NOTES.txt").write_text("why v3 exists")
    (tmp_path / "latest").symlink_to("v3")

    _model(0.7).save(str(tmp_path / "latest"))

    assert (tmp_path / "latest").is_symlink() and os.readlink(tmp_path / "latest") == "v3"
    assert (tmp_path / "v3" / "NOTES.txt").read_text() == "why v3 exists"
    torch.testing.assert_close(_gates(tmp_path / "v3"), torch.full((4,), 0.7))
    torch.testing.assert_close(_gates(tmp_path / "latest"), torch.full((4,), 0.7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "v3"]  # no .latest.old-*


def test_dangling_link_is_followed_and_a_link_loop_is_refused(tmp_path):
    (tmp_path / "next").symlink_to("v4")  # v4 does not exist yet
    _model(0.3).save(str(tmp_path / "next"))
    assert (tmp_path / "next").is_symlink() and (tmp_path / "v4" / "config.json").is_file()
    torch.testing.assert_close(_gates(tmp_path / "next"), torch.full((4,), 0.3))

    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(OSError, match="loop"):
        _model(0.3).save(str(tmp_path / "a"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "next", "v4"]


def test_folder_that_is_not_a_servable_is_refused_when_a_save_would_replace_its_files(tmp_path):
    project = tmp_path / "project"
    (project / "encoders").mkdir(parents=True)
    (project / "encoders" / "my_encoder.py").write_text("class MyEncoder: ...")
    (project / "config.json").write_text('{"learning_rate": 0.1}')
    before = _snapshot(project)
    with pytest.raises(FileExistsError) as info:
        _model(0.5).save(str(project))
    message = str(info.value)
    assert str(project) in message and "['config.json', 'encoders']" in message
    assert "new or empty directory" in message
    assert _snapshot(project) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]

    # a folder holding only files of other names is a fine target: they are kept
    notes = tmp_path / "notes_only"
    notes.mkdir()
    (notes / "README.md").write_text("model card")
    (notes / "eval").mkdir()
    (notes / "eval" / "scores.csv").write_text("r_precision,0.9")
    _model(0.5).save(str(notes))
    _model(0.6).save(str(notes))  # the swap path keeps them too
    assert (notes / "README.md").read_text() == "model card"
    assert (notes / "eval" / "scores.csv").read_text() == "r_precision,0.9"
    torch.testing.assert_close(_gates(notes), torch.full((4,), 0.6))


# The child process saves under permissions it cannot bypass: as root, it runs through
# ``setpriv`` with the capabilities that override file permissions dropped. It saves into each
# target given and prints one line per target: the PermissionError, or "saved".
CHILD_SAVE = textwrap.dedent(
    """
    import sys
    from quaterion_models import SimilarityModel
    from quaterion_models.heads import GatedHead
    from tests.quaterion_models.toy_encoders import LinearEncoder

    model = SimilarityModel(encoders=LinearEncoder(5, 4), head=GatedHead(4))
    for target in sys.argv[1:]:
        try:
            model.save(target)
            print("saved")
        except PermissionError as err:
            print("PermissionError:", err)
    """
)


def _save_without_permission_override(targets: list, script: str = CHILD_SAVE) -> list:
    command = [sys.executable, "-c", script, *map(str, targets)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root: setpriv (util-linux) is needed to drop DAC overrides"
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=_child_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_read_only_target_fails_before_anything_is_swapped(tmp_path):
    # (folder made read-only, relative to the target): the target itself, a folder of the
    # user's (moved into the new save), a folder of the previous save (emptied by the swap)
    cases = ["", "eval", "head"]
    targets = [tmp_path / f"servable{index}" for index in range(len(cases))]
    before = {}
    for target, locked in zip(targets, cases):
        _model(0.2).save(str(target))
        (target / "NOTES.txt").write_text("mine")
        (target / "eval").mkdir()
        (target / "eval" / "scores.csv").write_text("0.9")
        before[target] = _snapshot(target)
        (target / locked).chmod(0o555)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o555)
    try:
        *lines, last = _save_without_permission_override([*targets, empty])
    finally:
        for target, locked in zip(targets, cases):
            (target / locked).chmod(0o755)
    assert len(lines) == len(cases), lines
    for line, target, locked in zip(lines, targets, cases):
        assert line.startswith(f"PermissionError: [Errno 13] cannot save into {target}"), line
        assert f"{target / locked}".rstrip("/") in line and "Nothing was changed" in line, line
        assert _snapshot(target) == before[target]  # user files where they were, model intact
        torch.testing.assert_close(_gates(target), torch.full((4,), 0.2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["empty"] + [t.name for t in targets]  # no leftovers

    # an empty read-only folder holds nothing to strand: it is replaced
    assert last == "saved"
    torch.testing.assert_close(_gates(empty), torch.full((4,), 2.0))


CHILD_CHECK = textwrap.dedent(
    """
    import sys
    from quaterion_models.utils.directory_swap import check_save_target

    for target in sys.argv[1:]:
        try:
            check_save_target(target)
            print("ok")
        except PermissionError as err:
            print("PermissionError:", err)
    """
)


def test_check_save_target_refuses_what_save_would_refuse_and_writes_nothing(tmp_path):
    check = directory_swap.check_save_target
    a_file = tmp_path / "weights.txt"
    a_file.write_text("not a folder")
    project = tmp_path / "project"
    (project / "encoders").mkdir(parents=True)
    (project / "config.json").write_text('{"learning_rate": 0.1}')
    servable = tmp_path / "servable"
    _model(0.3).save(str(servable))
    (servable / "NOTES.txt").write_text("mine")
    before = _snapshot(tmp_path)
    for bad, error in [(a_file, NotADirectoryError), (a_file / "model", NotADirectoryError),
                       (project, FileExistsError)]:  # fmt: skip
        with pytest.raises(error) as checked:
            check(str(bad))
        with pytest.raises(error) as saved:
            _model(0.5).save(str(bad))
        assert str(checked.value) == str(saved.value)
    assert check(str(servable)) == servable.resolve()
    assert check(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()
    link = tmp_path / "link"
    link.symlink_to(servable)
    assert check(str(link)) == servable.resolve()
    link.unlink()
    assert _snapshot(tmp_path) == before  # nothing created, moved or deleted
    with pytest.raises(TypeError, match="str or os.PathLike"):
        check(None)


def test_check_save_target_refuses_read_only_places(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    servable = tmp_path / "servable"
    _model(0.2).save(str(servable))
    (servable / "head").chmod(0o555)
    locked.chmod(0o555)
    targets = [locked / "model", locked / "new" / "model", servable, tmp_path / "fine"]
    try:
        lines = _save_without_permission_override(targets, CHILD_CHECK)
    finally:
        locked.chmod(0o755)
        (servable / "head").chmod(0o755)
    assert lines[0].startswith(f"PermissionError: [Errno 13] cannot save into {targets[0]}")
    assert f"make {locked} writable" in lines[0]
    assert lines[1].startswith(f"PermissionError: [Errno 13] cannot save into {targets[1]}")
    assert f"{locked} is not writable" in lines[1]
    assert f"{servable / 'head'} is read-only" in lines[2]
    assert lines[3] == "ok" and len(lines) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked", "servable"]


# The child and this process each save their own model into one path in a loop and load it
# after every save: a load must always see one whole save (the head's gates equal the
# encoder's bias in every model written here), never parts of two.
CHILD_SAVES_IN_A_LOOP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.quaterion_models.test_save_targets import save_and_load_in_a_loop

    Path(sys.argv[2]).touch()  # imported: ready
    save_and_load_in_a_loop(sys.argv[1], gate=0.75)
    """
)


def save_and_load_in_a_loop(target: str, gate: float, rounds: int = 30) -> None:
    # several encoder directories make each load long enough for a swap to land inside it
    encoders = {key: LinearEncoder(5, 1) for key in "abcdef"}
    model = SimilarityModel(encoders=encoders, head=GatedHead(6))
    for parameter in model.parameters():
        torch.nn.init.constant_(parameter, gate)
    for _ in range(rounds):
        model.save(target)
        values = SimilarityModel.load(target).state_dict().values()
        assert len({value.flatten()[0].item() for value in values}) == 1, values


def test_two_processes_saving_and_loading_one_path_at_once(tmp_path):
    target, ready = tmp_path / "servable", tmp_path / "ready"
    save_and_load_in_a_loop(str(target), gate=0.0, rounds=1)
    (target / "NOTES.txt").write_text("mine")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SAVES_IN_A_LOOP, str(target), str(ready)],
        cwd=REPO_ROOT,
        env=_child_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        save_and_load_in_a_loop(str(target), gate=0.25)
        _, errors = child.communicate(timeout=240)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == 0, errors
    values = torch.cat(
        [value.flatten() for value in SimilarityModel.load(str(target)).state_dict().values()]
    )
    assert values.unique().numel() == 1 and values[0].item() in (0.25, 0.75)
    assert (target / "NOTES.txt").read_text() == "mine"
    ready.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["servable"]


def test_a_stuck_lock_holder_gives_a_timeout_not_a_hang(tmp_path, monkeypatch):
    _model(0.1).save(str(tmp_path / "m"))
    monkeypatch.setattr(directory_swap, "LOCK_TIMEOUT_S", 0.3)
    with lock_held_by_another_thread(tmp_path):
        with pytest.raises(TimeoutError, match=f"another process .* in {tmp_path} for 0.3 s"):
            _model(0.9).save(str(tmp_path / "m"))
        with pytest.raises(TimeoutError):
            SimilarityModel.load(str(tmp_path / "m"))
    torch.testing.assert_close(_gates(tmp_path / "m"), torch.full((4,), 0.1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # the refused save cleaned up


def test_locks_nest_in_one_thread_but_a_save_inside_a_load_is_refused(tmp_path):
    with directory_swap.directory_lock(tmp_path, shared=True):
        with directory_swap.directory_lock(tmp_path, shared=True):  # a load inside a load
            pass
        with pytest.raises(RuntimeError, match="while this thread is loading"):
            with directory_swap.directory_lock(tmp_path):
                pass
    with directory_swap.directory_lock(tmp_path):  # released: free again
        with directory_swap.directory_lock(tmp_path, shared=True):
            pass


PATH_CALLS = {
    "save": lambda path: _model(1.0).save(path),
    "load": lambda path: SimilarityModel.load(path),
    "export_onnx": lambda path: _model(1.0).export_onnx(path),
    "OnnxSimilarityModel.load": lambda path: __import__(
        "quaterion_models.onnx", fromlist=["OnnxSimilarityModel"]
    ).OnnxSimilarityModel.load(path),
}


@pytest.mark.parametrize("call", sorted(PATH_CALLS))
@pytest.mark.parametrize(
    "path, error, words",
    [
        (3, TypeError, ["directory path", "int 3", "str or os.PathLike"]),
        (None, TypeError, ["directory path", "NoneType None"]),
        (b"model", TypeError, ["directory path", "bytes b'model'"]),
        ("", ValueError, ["empty", "'.'"]),
    ],
)
def test_paths_that_are_not_directory_paths_are_refused(
    tmp_path, monkeypatch, call, path, error, words
):
    monkeypatch.chdir(tmp_path)  # "" used to mean the current directory
    with pytest.raises(error) as info:
        PATH_CALLS[call](path)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cwd", [".", "head", "notes"])
def test_saving_into_the_current_directory_keeps_the_process_in_it(tmp_path, monkeypatch, cwd):
    """The swap replaces the directory: a process working in it (or in one of its folders)
    must not be left in a deleted directory, where every relative path fails."""
    target = tmp_path / "m"
    _model(0.1).save(str(target))
    (target / "notes").mkdir()
    (target / "notes" / "a.txt").write_text("mine")
    monkeypatch.chdir(target / cwd)
    _model(0.9).save(str(target) if cwd != "." else ".")
    assert Path(os.getcwd()) == target / cwd and (target / cwd).is_dir()
    assert sorted(os.listdir(target)) == ["config.json", "encoders", "head", "notes"]
    torch.testing.assert_close(_gates(target), torch.full((4,), 0.9))
    Path("written.txt").write_text("relative paths work")  # the working directory is live
    assert (target / cwd / "written.txt").is_file()
    assert (target / "notes" / "a.txt").read_text() == "mine"


def test_a_named_pipe_called_config_json_is_refused_without_hanging(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    os.mkfifo(target / "config.json")  # opening it for reading would block forever
    outcome = []

    def save():
        try:
            _model(0.5).save(str(target))
        except FileExistsError as err:
            outcome.append(err)

    saver = threading.Thread(target=save, daemon=True)  # a hang must not block pytest's exit
    saver.start()
    saver.join(30)
    assert not saver.is_alive(), "save hung on the named pipe"
    assert outcome and "config.json" in str(outcome[0])
