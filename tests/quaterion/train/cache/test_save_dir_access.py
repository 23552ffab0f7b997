"""save_dir off the happy path: the fit's hold on it (a rival job cannot rebuild the cache
while a fit, or Lightning's launcher, still needs it), a cache of another user or on a
read-only directory, a group sharing a cache, ``~`` and a write that fails (a full disk)."""

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile

import pytest
import pytorch_lightning as pl
import torch

from quaterion.train.cache import CacheConfig, CacheType, DiskStore, _save_dir, persist, setup
from tests.quaterion.train.cache.test_save_dir import ROOT, _env, _fit, _unprivileged
from tests.quaterion.train.cache.test_ddp import _free_port
from tests.quaterion.train import helpers
from tests.quaterion.train.helpers import CountingEncoder, Model, fit_data, fit_losses

# another process trying to write save_dir (loads _save_dir.py alone: it needs no package)
_TRY_WRITE = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('save_dir', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "try:\n"
    "    module.SaveDirLock(sys.argv[2], wait_s=0.2).exclusive()\n"
    "    print('written')\n"
    "except module.CacheDirInUseError:\n"
    "    print('refused')\n"
)


def _try_write(save_dir):
    command = [sys.executable, "-c", _TRY_WRITE, _save_dir.__file__, str(save_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()


class _TryWriteInFit(pl.Callback):
    def __init__(self, save_dir):
        self.save_dir, self.seen = save_dir, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(_try_write(self.save_dir))


@pytest.mark.parametrize("cache", ["loaded", "filled"])
def test_a_fit_holds_its_save_dir_until_it_ends(tmp_path, cache):
    if cache == "loaded":
        _fit(tmp_path)
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=str(tmp_path)))
    probe = _TryWriteInFit(tmp_path)
    fit_losses(model, *fit_data()[1], callbacks=[probe])
    assert encoder.calls == (0 if cache == "loaded" else 32)
    assert probe.seen == ["refused"]  # the fit's hold: no other job rewrites the cache
    assert _try_write(tmp_path) == "written"  # the clean-up released it


def test_a_failed_fit_releases_its_save_dir(tmp_path):
    class Failing(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            raise RuntimeError("boom")

    model = Model(
        encoders={"default": CountingEncoder()}, cache_config=CacheConfig(save_dir=str(tmp_path))
    )
    with pytest.raises(RuntimeError, match="boom"):
        fit_losses(model, *fit_data()[1], callbacks=[Failing()])
    assert _try_write(tmp_path) == "written"


@pytest.mark.slow
def test_a_rival_job_cannot_rebuild_the_cache_between_the_ranks_set_ups(tmp_path):
    """Lightning's launcher: rank 0 sets the cache up before ``trainer.fit``, rank 1 during
    it. A rival job rebuilding the cache in that window would make rank 1 fill alone (a
    hang): the fit's hold refuses the rival, and both ranks read the same generation."""
    from tests.quaterion.train.cache.held_ddp_fit import config

    save_dir, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=config(str(save_dir)))
    fit_losses(model, *fit_data(shuffle=False)[1])
    generation = os.readlink(save_dir / "current")
    env = {**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    for name in [n for n in env if n.startswith("PL_") or n in ("LOCAL_RANK", "NODE_RANK")]:
        env.pop(name)
    command = [sys.executable, "-m", "tests.quaterion.train.cache.held_ddp_fit"]
    job = subprocess.Popen(
        command + [str(out), str(save_dir), "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # rank 1 too is stopped on a timeout
    )
    try:
        output = job.communicate(timeout=300)[0]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    assert job.returncode == 0, output[-3000:]
    ranks = [json.load(open(out / f"rank{rank}.json")) for rank in range(2)]
    assert ranks[0]["rival"].startswith("refused 0"), ranks[0]["rival"]
    assert "read by a fit that still runs" in ranks[0]["rival"]
    assert [rank["calls"] for rank in ranks] == [0, 0]
    assert [rank["generation"] for rank in ranks] == [generation, generation]
    assert all(rank["losses"] for rank in ranks)


def _reads_then_fills(save_dir, cache_type):
    """As another user: a fit that matches the cache, then one that would fill it."""
    encoder, losses = _fit(save_dir, cache_type)
    other = CountingEncoder()
    config = CacheConfig(cache_type=cache_type, save_dir=save_dir)
    model = Model(encoders={"default": other}, cache_config=config)
    try:
        fit_losses(model, *fit_data(n=20)[1])
        message = "no error"
    except PermissionError as err:
        message = str(err)
    return encoder.calls, losses.tolist(), other.calls, message


def _listing(root):
    return sorted(
        (
            os.path.relpath(os.path.join(top, name), root),
            os.lstat(os.path.join(top, name)).st_mtime_ns,
        )
        for top, dirs, files in os.walk(root)
        for name in dirs + files
    )


@pytest.mark.parametrize("cache_type", [CacheType.CPU, CacheType.DISK])
def test_a_cache_this_user_cannot_write_is_read_and_never_filled(cache_type):
    """A cache this user cannot write (another user's, write bits off; as root the check
    runs as ``nobody``, since root ignores permissions): read without its lock file being
    written; a fit it does not match fails before anything is encoded."""
    base = tempfile.mkdtemp(prefix="quaterion-theirs-")
    try:
        os.chmod(base, 0o755)  # reachable by the unprivileged child
        save_dir = os.path.join(base, "cache")
        old = os.umask(0o022)
        try:
            _, losses = _fit(save_dir, cache_type)
        finally:
            os.umask(old)
        subprocess.run(["chmod", "-R", "a-w", save_dir], check=True)  # for a non-root run
        before = _listing(save_dir)
        calls, again, other_calls, message = _unprivileged(_reads_then_fills, save_dir, cache_type)
        assert calls == 0
        torch.testing.assert_close(torch.tensor(again), losses)
        assert other_calls == 0
        assert "cannot be written by this process" in message and save_dir in message
        assert "umask 002" in message and "Pass a save_dir you can write" in message
        assert _listing(save_dir) == before  # nothing written, nothing removed
    finally:
        subprocess.run(["chmod", "-R", "u+w", base], check=True)
        subprocess.run(["rm", "-rf", base], check=True)


def _fills_other_data(save_dir):
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
    fit_losses(model, *fit_data(n=20)[1])
    return encoder.calls


def test_a_group_shares_a_cache_under_a_group_writable_umask():
    """Files and generations follow the umask (no forced 0700): with umask 002 another member
    of the group rebuilds the cache, and the first user reads the new one."""
    base = tempfile.mkdtemp(prefix="quaterion-group-")
    old = os.umask(0o002)
    try:
        os.chmod(base, 0o775)
        save_dir = os.path.join(base, "cache")
        _fit(save_dir)
        generation = os.readlink(os.path.join(save_dir, "current"))
        assert os.stat(os.path.join(save_dir, generation)).st_mode & 0o777 == 0o775
        assert os.stat(os.path.join(save_dir, _save_dir.LOCK)).st_mode & 0o777 == 0o664
        assert _unprivileged(_fills_other_data, save_dir, gid=os.getgid()) == 20 + 8
        assert os.readlink(os.path.join(save_dir, "current")) != generation
        assert not os.path.exists(os.path.join(save_dir, generation))  # theirs removed ours
        assert _fills_other_data(save_dir) == 0  # read back by the first user
    finally:
        os.umask(old)
        subprocess.run(["rm", "-rf", base], check=True)


def test_tilde_in_save_dir_is_the_home_directory(tmp_path, monkeypatch):
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    assert _fit("~/cache")[0].calls == 32
    assert (tmp_path / "home" / "cache" / "manifest.json").is_file()
    assert os.listdir(tmp_path / "work") == []  # no directory named "~"
    assert _fit("~/cache")[0].calls == 0


@pytest.mark.parametrize("where", ["manifest", "disk fill"])
def test_a_write_that_fails_keeps_the_cache_of_before(tmp_path, monkeypatch, where):
    """e.g. a full disk while the manifest (written last) is saved, or while a DISK fill
    writes its rows: the error is raised, the cache of before stays whole and is reused, and
    what the failed run wrote is gone (its generation at once, its fill files by that run)."""
    kind = CacheType.DISK if where == "disk fill" else CacheType.CPU
    _, losses = _fit(tmp_path, kind)
    generation = os.readlink(tmp_path / "current")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        if where == "manifest":
            patch.setattr(persist, "write_json", disk_full)
        else:
            patch.setattr(DiskStore, "finish_fill", disk_full)  # after the rows were written
        config = CacheConfig(cache_type=kind, save_dir=str(tmp_path))
        model = Model(encoders={"default": CountingEncoder()}, cache_config=config)
        with pytest.raises(OSError, match="No space left on device"):
            fit_losses(model, *fit_data(n=20)[1])
    assert [f for f in os.listdir(tmp_path) if f.startswith(".gen-")] == [generation]
    assert os.path.isdir(tmp_path / ".fill") == (where == "disk fill")
    encoder, again = _fit(tmp_path, kind)
    assert encoder.calls == 0
    torch.testing.assert_close(again, losses)
    hidden = sorted(f for f in os.listdir(tmp_path) if f.startswith("."))
    assert hidden == sorted([generation, _save_dir.MARK, _save_dir.LOCK])  # .fill removed


def _set_up_as(rank, save_dir, **kwargs):
    """``cache_loaders`` of a 2-rank DDP trainer before any process group exists: rank 0
    before Lightning's launcher starts the others, or rank 1 started by it."""
    encoder = CountingEncoder()
    model = Model(encoders={"default": encoder}, cache_config=CacheConfig(save_dir=save_dir))
    trainer = helpers.trainer(strategy="ddp", devices=2)
    assert trainer.global_rank == rank
    fit = model.cache_loaders(trainer, *fit_data(**kwargs)[1])
    model.unwrap_cache()
    return fit.cached, encoder.calls


def test_a_rank_started_by_lightning_needs_the_cache_rank_zero_loaded(tmp_path, monkeypatch):
    """Rank 0 records the generation it loaded in the environment Lightning's launcher
    hands to the other ranks; one that finds another cache (or none, which it would fill
    alone while rank 0 trains: a hang) stops with an error saying what happened."""
    _fit(tmp_path / "a")
    _fit(tmp_path / "b")

    def no_fill(*args, **kwargs):  # a 2-rank fill here would start (or wait for) rank 1
        raise InterruptedError("the fill would start here")

    monkeypatch.setattr(setup, "fill_cache", no_fill)
    for name in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", setup.LOADED_ENV):
        monkeypatch.delenv(name, raising=False)
    assert _set_up_as(0, str(tmp_path / "a")) == (True, 0)
    loaded = os.environ[setup.LOADED_ENV]
    generation = os.readlink(tmp_path / "a" / "current")
    assert loaded == f"{os.getpid()}:{tmp_path / 'a'}/{generation}"
    monkeypatch.setenv("LOCAL_RANK", "1")
    # a later job inheriting this environment (not started by this process) is not checked
    assert _set_up_as(1, str(tmp_path / "b")) == (True, 0)
    monkeypatch.setattr(os, "getppid", os.getpid)  # from here: ranks this process started
    assert _set_up_as(1, str(tmp_path / "a")) == (True, 0)  # the same: fine
    with pytest.raises(RuntimeError, match="Rank 0 loaded the encoder cache .* found .*b/.gen-"):
        _set_up_as(1, str(tmp_path / "b"))  # e.g. a relative save_dir, another directory
    with pytest.raises(RuntimeError, match="found no cache it can load in .*a.*absolute"):
        with pytest.warns(UserWarning, match="will be rebuilt"):
            _set_up_as(1, str(tmp_path / "a"), n=20)  # other data: it would fill alone
    monkeypatch.delenv("LOCAL_RANK")
    with pytest.raises(InterruptedError), pytest.warns(UserWarning, match="will be rebuilt"):
        _set_up_as(0, str(tmp_path / "a"), n=20)  # rank 0 fills...
    assert os.environ[setup.LOADED_ENV] == f"{os.getpid()}:"  # ...and so do the ranks it starts
