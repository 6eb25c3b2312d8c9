"""Beyond one machine: two JAX processes on localhost train like one process, and checkpoint.

``tests/multiprocess_worker.py`` is the program every process runs (the multi-host recipe of
``docs/sharding.md`` in small). This module starts it twice:

1. two processes (``jax.distributed.initialize`` on a free localhost port, gloo CPU collectives,
   4 simulated CPU devices each): one ``(4, 2)`` mesh over the 8 devices of both;
2. then one process with 8 devices and the same collectives, which also restores the two
   processes' checkpoints and resumes from them.

and checks: the parameters and the whole optimizer state after the same steps are bit-identical
(``adaptix.adam`` with sharded parameters; ``adaptix.shard_state`` with replicated ones, each
device holding a quarter of the moments), each process wrote its own shards of the Orbax
checkpoint, and a resumed run (save, restore, continue) equals the straight run bit for bit, in
either process count. 20-35 s on two busy cores. Skipped, with the reason, where the platform
has no distributed runtime or CPU collectives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")

WORKER = Path(__file__).resolve().parent / "multiprocess_worker.py"
TIMEOUT = 300  # seconds for one run of the worker, all its processes together
SCENARIOS = ("sharded", "zero")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(out: Path, num_processes: int, devices: int, extra: tuple) -> list:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip())
    coordinator = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(num_processes):
        cmd = [sys.executable, str(WORKER), str(out), "--coordinator", coordinator,
               "--num-processes", str(num_processes), "--process-id", str(i), "--timeout", "120", *extra]
        with open(out / f"log-{i}.txt", "w") as log:  # the child keeps its own handle
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def wait_all(procs: list, timeout: float) -> list:
    """Exit codes; a process still running after ``timeout`` seconds is killed with its process group."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return [proc.returncode for proc in procs]


def run_worker(out: Path, num_processes: int, devices: int, *extra: str) -> None:
    """Runs the worker in ``num_processes`` processes; skips if it cannot run here, fails on error or timeout.

    A second try on a new port if the first one's port was taken in the meantime.
    """
    out.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        codes = wait_all(start_processes(out, num_processes, devices, extra), TIMEOUT)
        skips = sorted(out.glob("skip-*.txt"))
        if skips:
            pytest.skip(f"no multi-process JAX on this platform: {skips[0].read_text()}")
        logs = [(out / f"log-{i}.txt").read_text() for i in range(num_processes)]
        if codes == [0] * num_processes:
            return
        if attempt == 0 and any("already in use" in log.lower() for log in logs):
            continue
        tails = "\n".join(f"--- process {i} (exit {c}):\n{log[-3000:]}" for i, (c, log) in enumerate(zip(codes, logs)))
        pytest.fail(f"worker failed or timed out after {TIMEOUT} s ({num_processes} processes):\n{tails}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("multiprocess")
    run_worker(base / "two", 2, 4)
    run_worker(base / "one", 1, 8, "--restore-from", str(base / "two"))
    results = {}
    for name in ("two", "one"):
        results[name] = {"info": json.loads((base / name / "results.json").read_text()),
                         "arrays": dict(np.load(base / name / "results.npz"))}
    return results


def arrays(run: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in run["arrays"].items() if k.startswith(prefix)}


def assert_bitwise_equal(a: dict, b: dict, what: str) -> None:
    assert a and sorted(a) == sorted(b), what
    differ = [k for k in a if a[k].dtype != b[k].dtype or not np.array_equal(a[k], b[k])]
    assert not differ, f"{what}: {differ} differ"


def test_two_processes_of_four_devices(runs):
    info = runs["two"]["info"]
    assert (info["process_count"], info["device_count"], info["local_device_count"]) == (2, 8, 4)
    assert (runs["one"]["info"]["process_count"], runs["one"]["info"]["device_count"]) == (1, 8)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_processes_train_like_one(runs, scenario):
    # parameters and every state leaf after the same steps, bit for bit
    assert_bitwise_equal(arrays(runs["two"], f"{scenario}/straight/"), arrays(runs["one"], f"{scenario}/straight/"),
                         f"{scenario}: two processes vs one")


def test_state_is_sharded_across_processes(runs):
    info = runs["two"]["info"]
    # sharded parameters: so is the state (about 1/4 per device, as the parameters: mostly split 4 or 8 ways);
    # replicated parameters with shard_state: exactly 1/4 of the moments per device
    assert info["sharded"]["params_fraction_per_device"] < 0.3
    assert info["sharded"]["state_fraction_per_device"] < 0.3
    assert info["zero"]["params_fraction_per_device"] == 1.0
    assert info["zero"]["state_fraction_per_device"] == 0.25
    assert set(info["zero"]["param_specs"].values()) == {"P()"}  # the parameters stay replicated


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resumed_run_equals_straight_run(runs, scenario):
    for name in ("two", "one"):
        assert_bitwise_equal(arrays(runs[name], f"{scenario}/resumed/params"),
                             arrays(runs[name], f"{scenario}/straight/params"), f"{scenario}, {name}: resumed")
        assert runs[name]["info"][scenario]["resumed_param_specs"] == runs[name]["info"][scenario]["param_specs"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_process_writes_its_shards(runs, scenario):
    files = runs["two"]["info"][scenario]["checkpoint_files"]
    # Orbax's OCDBT layout: one data folder per process, each written by its own process
    assert any("process_0" in f for f in files) and any("process_1" in f for f in files), files


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_checkpoint_of_two_processes_resumes_in_one(runs, scenario):
    assert_bitwise_equal(arrays(runs["one"], f"{scenario}/cross/params"),
                         arrays(runs["two"], f"{scenario}/resumed/params"), f"{scenario}: restored in one process")

