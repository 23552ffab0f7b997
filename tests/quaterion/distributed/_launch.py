"""Run a function on several local gloo ranks (spawned processes), bounded in time."""

import os
import signal
import socket
import subprocess
import time
from typing import Any, Callable, Optional, Sequence

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_ranks(
    function: Callable[..., Any], args: Sequence[Any], world: int = 2, timeout: float = 120.0
) -> None:
    """``function(rank, world, *args)`` in ``world`` spawned processes; raises on failure.

    Processes still running after ``timeout`` seconds are terminated and the call fails.
    """
    context = mp.start_processes(
        function, args=(world, *args), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"ranks still running after {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
                process.join(5)


def spawned_results(tmp_path_factory, name: str, function: Callable, timeout: float) -> list:
    """``function(rank, world, store_file, out_dir)`` on 2 spawned ranks in a fresh temporary
    directory; what each rank saved as ``rank<r>.pt``, in rank order."""
    import torch

    tmp = tmp_path_factory.mktemp(name)
    spawn_ranks(function, (str(tmp / "store"), str(tmp)), world=2, timeout=timeout)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


def gloo_init(rank: int, world: int, store_file: str, timeout_s: Optional[float] = None) -> None:
    """Join a gloo process group through a file store (no port needed).

    ``timeout_s`` bounds every collective (a short one turns a rank left waiting into an
    error instead of a hang); ``None`` keeps torch's default.
    """
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    extra = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
    dist.init_process_group(
        "gloo", init_method=f"file://{store_file}", rank=rank, world_size=world, **extra
    )


def gloo_finish() -> None:
    """Leave the process group: collect what still references it first (a DDP wrapper, an
    autograd graph), so that ``destroy_process_group`` frees the gloo threads now rather than
    at interpreter exit, where tearing them down can abort the process ("terminate called
    without an active exception")."""
    import gc

    import torch.distributed as dist

    gc.collect()
    dist.destroy_process_group()


def start_script(command: Sequence[str], env: dict, cwd: str) -> subprocess.Popen:
    """``command`` in its own session (killed as a whole on timeout), output captured."""
    return subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_scripts(processes: Sequence[subprocess.Popen], timeout_s: float) -> list:
    """``(returncode, output, finished_at)`` of each process (``time.monotonic()`` when its
    output ended); every process group still alive afterwards (a timeout) is stopped.

    A process still running gets ``SIGTERM`` first: torchrun then stops its workers, which
    run in sessions of their own (a ``SIGKILL`` of torchrun's group would leave them
    running); what is still alive 10 s later is killed."""
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=timeout_s)
            results.append((process.returncode, output, time.monotonic()))
    finally:
        alive = [process for process in processes if process.poll() is None]
        for process in alive:
            os.killpg(process.pid, signal.SIGTERM)
        for process in alive:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return results
