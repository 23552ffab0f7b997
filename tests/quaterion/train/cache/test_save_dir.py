"""What the cache owns in save_dir: foreign files, files and links as save_dir, read-only
directories, and two processes writing one save_dir (real processes, real permissions)."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import pytest
import torch

from quaterion.train.cache import CacheConfig, CacheDirInUseError, CacheType, _save_dir
from tests.quaterion.train.cache.saved import rewrite_manifest
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))


def _fit(save_dir, cache_type=CacheType.CPU):
    encoder = CountingEncoder()
    config = CacheConfig(cache_type=cache_type, save_dir=str(save_dir))
    return encoder, fit_losses(
        Model(encoders={"default": encoder}, cache_config=config), *fit_data()[1]
    )


def _user_files(root):
    files = {"encoders/my_encoder.py": "class MyEncoder: ...\n", "manifest.json": '{"mine": 1}'}
    for relative, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
        with open(os.path.join(root, relative), "w") as file:
            file.write(text)
    return files


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
def test_foreign_folder_is_refused_before_the_fill_and_left_untouched(tmp_path, cache_type):
    files = _user_files(tmp_path)
    encoder = CountingEncoder()
    config = CacheConfig(cache_type=cache_type, save_dir=str(tmp_path))
    model = Model(encoders={"default": encoder}, cache_config=config)
    with pytest.raises(FileExistsError, match="holds files the cache did not create") as error:
        fit_losses(model, *fit_data()[1])
    assert str(tmp_path) in str(error.value) and "quaterion_cache" in str(error.value)
    assert encoder.calls == 0
    for relative, text in files.items():
        path = os.path.join(tmp_path, relative)
        assert not os.path.islink(path) and open(path).read() == text
    assert sorted(os.listdir(tmp_path)) == ["encoders", "manifest.json"]  # nothing added


def test_caches_nest_in_either_order(tmp_path):
    """e.g. the cars example: ``cache_dir`` and ``cache_dir/<variant>``."""
    inner, inner_losses = _fit(tmp_path / "variant")
    outer, outer_losses = _fit(tmp_path)  # holds only another cache: allowed
    assert inner.calls == outer.calls == 32
    assert _fit(tmp_path / "variant")[0].calls == 0 and _fit(tmp_path)[0].calls == 0
    torch.testing.assert_close(outer_losses, inner_losses)


def test_user_file_in_a_cache_folder_is_never_replaced(tmp_path):
    _, losses = _fit(tmp_path)
    os.remove(os.path.join(tmp_path, "train_labels"))  # the user puts their own file there
    with open(os.path.join(tmp_path, "train_labels"), "w") as file:
        file.write("mine")
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=str(tmp_path)))
    with pytest.raises(FileExistsError, match="train_labels"):
        fit_losses(model, *fit_data()[1])
    assert encoder.calls == 0 and open(os.path.join(tmp_path, "train_labels")).read() == "mine"


def test_cache_written_before_the_mark_is_recognised_and_reused(tmp_path):
    """A manifest v3 cache (generations, no mark, no content sample) still loads."""
    _, losses = _fit(tmp_path)
    for name in (_save_dir.MARK, _save_dir.LOCK):
        os.remove(os.path.join(tmp_path, name))

    def without_samples(manifest):
        for record in manifest["data"].values():
            del record["sample_sha256"]

    assert rewrite_manifest(tmp_path, without_samples)["version"] == 3
    with pytest.warns(UserWarning, match="without a content sample"):
        encoder, again = _fit(tmp_path)
    assert encoder.calls == 0
    torch.testing.assert_close(again, losses)
    assert os.path.isfile(os.path.join(tmp_path, _save_dir.MARK))


def test_save_dir_that_is_a_file_fails_before_the_fill(tmp_path):
    path = tmp_path / "cache"
    path.write_text("a file")
    for save_dir in (path, tmp_path / "link"):
        if save_dir != path:
            os.symlink(path, save_dir)
        with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
            encoder, _ = _fit(save_dir, CacheType.DISK)
    assert path.read_text() == "a file"


def test_symlinked_save_dir_is_followed_and_a_dangling_one_refused(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    os.symlink(target, tmp_path / "link")
    first, losses = _fit(tmp_path / "link", CacheType.DISK)
    assert first.calls == 32 and os.path.islink(tmp_path / "link")
    assert os.path.isfile(target / "encoders" / "default.rows")
    for save_dir in (tmp_path / "link", target):
        encoder, again = _fit(save_dir, CacheType.DISK)
        assert encoder.calls == 0
        torch.testing.assert_close(again, losses)
    os.symlink(tmp_path / "missing", tmp_path / "dangling")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _fit(tmp_path / "dangling")


def _as_nobody(connection, gid, function, args):
    """Child process body of :func:`_unprivileged`."""
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(65534)
        connection.send((True, function(*args)))
    except BaseException:
        connection.send((False, traceback.format_exc()))


def _unprivileged(function, *args, gid=65534):
    """Run ``function(*args)`` in a child process as user ``nobody`` (in group ``gid`` alone)
    when we are root (root ignores permissions); returns what it returns, or raises its
    traceback. The child is spawned, not forked: a child forked from a process running
    torch's threads can deadlock on a lock one of them held."""
    if os.geteuid() != 0:
        return function(*args)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_as_nobody, args=(child, gid, function, args), daemon=True)
    process.start()
    try:
        ok, value = parent.recv() if parent.poll(300) else (False, "timed out")
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(10)
    if not ok:
        raise AssertionError(value)
    return value


def _read_only_fit(save_dir):
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
    try:
        fit_losses(model, *fit_data()[1])
    except PermissionError as err:
        return str(err), encoder.calls
    return "no error", encoder.calls


def test_read_only_save_dir_fails_before_the_fill():
    base = tempfile.mkdtemp(prefix="quaterion-ro-")
    try:
        os.chmod(base, 0o755)  # reachable by the unprivileged child
        save_dir = os.path.join(base, "cache")
        os.mkdir(save_dir)
        os.chmod(save_dir, 0o555)
        message, calls = _unprivileged(_read_only_fit, save_dir)
        assert "cannot be written" in message and save_dir in message
        assert calls == 0
        assert os.listdir(save_dir) == []
    finally:
        os.chmod(os.path.join(base, "cache"), 0o755)
        subprocess.run(["rm", "-rf", base], check=True)


def _env():
    return {**os.environ, "PYTHONPATH": ROOT}


def _start(save_dir, out, hold=""):
    command = [sys.executable, "-m", "tests.quaterion.train.cache.concurrent_fill"]
    return subprocess.Popen(
        command + [str(save_dir), str(out), str(hold)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition, seconds=200):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_processes_filling_one_disk_cache_do_not_collide(tmp_path):
    """The second waits for the first one's lock, then reuses the cache it wrote."""
    save_dir, hold = tmp_path / "cache", tmp_path / "second-started"
    lock = save_dir / _save_dir.LOCK
    first = _start(save_dir, tmp_path / "first.json", hold)
    second = None
    try:
        _wait_for(lambda: lock.exists() and lock.read_text().startswith("pid"))
        second = _start(save_dir, tmp_path / "second.json")
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(second.stdout), daemon=True)
        reader.start()
        _wait_for(lambda: any("in use by another process" in line for line in lines))
        hold.write_text("go")  # the second waits for the lock: let the first finish
        first_output = first.communicate(timeout=300)[0]
        second.wait(300)
        reader.join(30)
        assert [p.returncode for p in (first, second)] == [0, 0], (first_output, lines)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    first_run = json.load(open(tmp_path / "first.json"))
    second_run = json.load(open(tmp_path / "second.json"))
    assert first_run["calls"] == 32 and second_run["calls"] == 0
    torch.testing.assert_close(
        torch.tensor(second_run["losses"]), torch.tensor(first_run["losses"])
    )


_HOLD_LOCK = (
    "import sys, time; from quaterion.train.cache._save_dir import SaveDirLock; "
    "lock = SaveDirLock(sys.argv[1]); getattr(lock, sys.argv[2])(); print('held', flush=True); "
    "time.sleep(600)"
)


def lock_holder(save_dir, mode="exclusive"):
    os.makedirs(save_dir, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(save_dir), mode],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_two_jobs_racing_for_the_write_lock_never_both_fill(tmp_path):
    """Both jobs find no cache and wait for the exclusive lock (a third process reads the
    cache dir: a shared hold) until it is released: the loser waits for the winner's fill,
    then reuses its cache."""
    save_dir, hold = tmp_path / "cache", tmp_path / "hold"
    hold.write_text("each fill's first batch takes a second")
    gate = lock_holder(save_dir, "shared")
    jobs, lines = [], {}
    try:
        for name in ("a", "b"):
            job = _start(save_dir, tmp_path / f"{name}.json", hold)
            lines[name] = []
            threading.Thread(
                target=lambda job=job, out=lines[name]: out.extend(job.stdout), daemon=True
            ).start()
            jobs.append(job)
        for name in lines:  # both found no cache and wait to write one
            _wait_for(lambda out=lines[name]: any("(a reader of the cache)" in s for s in out))
        os.kill(gate.pid, signal.SIGKILL)
        for job in jobs:
            job.wait(300)
        assert [job.returncode for job in jobs] == [0, 0], lines
    finally:
        for process in (gate, *jobs):
            if process.poll() is None:
                process.kill()
    runs = [json.load(open(tmp_path / f"{name}.json")) for name in ("a", "b")]
    assert sorted(run["calls"] for run in runs) == [0, 32], runs  # one fill in all
    reused = ["wrote the encoder cache" in "".join(lines[name]) for name in ("a", "b")]
    assert reused == [run["calls"] == 0 for run in runs], lines
    torch.testing.assert_close(torch.tensor(runs[0]["losses"]), torch.tensor(runs[1]["losses"]))


def test_a_live_writer_is_a_clear_error_and_a_killed_one_blocks_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_save_dir, "LOCK_WAIT_S", 0.5)
    holder = lock_holder(tmp_path)
    try:
        with pytest.raises(CacheDirInUseError, match=f"pid {holder.pid} on"):
            _fit(tmp_path)
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock
        holder.wait(30)
        encoder, _ = _fit(tmp_path)  # the kernel released it: no stale lock
        assert encoder.calls == 32
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.parametrize("name", [_save_dir.LOCK, ".fill"])
def test_own_name_replaced_by_a_symlink_is_refused_and_its_target_untouched(tmp_path, name):
    """The lock file and the DISK fill directory are written through: a symlink planted at
    their name would have the cache truncate (lock) or consume (fill rows) a user's file."""
    save_dir, user = tmp_path / "cache", tmp_path / "user"
    (user / "default").mkdir(parents=True)
    (user / "default" / "rank0.rows").write_text("mine")
    _fit(save_dir, CacheType.DISK)
    target = user if name == ".fill" else user / "default" / "rank0.rows"
    subprocess.run(["rm", "-rf", str(save_dir / name)], check=True)
    os.symlink(target, save_dir / name)
    encoder = CountingEncoder()
    config = CacheConfig(cache_type=CacheType.DISK, save_dir=str(save_dir))
    model = Model(encoders={"default": encoder}, cache_config=config)
    with pytest.raises(FileExistsError, match=f"did not create \\({name}\\)"):
        fit_losses(model, *fit_data(n=20)[1])  # other data: a new fill
    assert encoder.calls == 0
    assert (user / "default" / "rank0.rows").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["fill", "save"])
def test_a_run_killed_mid_fill_or_mid_save_leaves_the_cache_whole(tmp_path, where):
    """SIGKILL while a rebuild writes: the next run reuses the complete cache of before,
    never the killed run's half-written rows, and removes what the killed run left."""
    save_dir = tmp_path / "cache"
    _, losses = _fit(save_dir, CacheType.DISK)
    command = [sys.executable, "-m", "tests.quaterion.train.cache.killed_fill"]
    killed = subprocess.Popen(
        command + [str(save_dir), where], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert killed.stdout.readline().strip() == "stopped"
    finally:
        killed.kill()  # SIGKILL
        killed.wait(30)

    def generations():
        return [f for f in os.listdir(save_dir) if f.startswith(".gen-")]

    if where == "fill":
        assert os.path.isfile(save_dir / ".fill" / "default" / "rank0.rows")  # not closed
    else:
        assert len(generations()) == 2
    encoder, again = _fit(save_dir, CacheType.DISK)
    assert encoder.calls == 0
    torch.testing.assert_close(again, losses)
    assert generations() == [os.readlink(save_dir / "current")]
    assert not os.path.exists(save_dir / ".fill")
