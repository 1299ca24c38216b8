"""Executing a plan: base models first, then the missing fine-tuning runs, in one of three places.

- in ``workers`` local worker processes (``--workers N``; 1 runs them one after another);
- as Ray tasks on a cluster (``--executor ray [--address ADDR]``, the optional ``ray`` extra). A task
  writes into the driver's run cache when the cluster shares that folder; otherwise it trains into a
  temporary folder and returns the run's files to the driver, which unpacks them into its cache.

Every run executes in a worker process pinned to one core (``RUN_CORES``), local or on Ray: XLA sizes
its CPU thread pool by the cores a process may use and partitions loops, and so the order of sums, by
that size; with the core count fixed, a run is a pure function of its spec (and of the source, whose
hash is part of the cache key and is checked against every remote worker's), so where it ran never
changes its result. Tests compare the run files and verdicts of the executors bit for bit. (A run
trained directly in a multi-core process, e.g. ``python -m toy_models rl``, may differ in its last bits.)
Worker processes live for the whole plan, so each compiles a step once. Every run is written through
``toy_models.run_store`` (one writer per run, whole or not at all), so two ``verify`` calls sharing a cache
never train a run twice. Progress events travel from the workers to the driver on a plain
``multiprocessing`` queue, which needs no server process. On Ctrl-C or SIGTERM the driver stops its
workers (each removes the run it was writing) before it prints its one line; if the driver is killed
outright, its workers notice within a second and exit (``exit_with_parent``).
"""

from __future__ import annotations

import io
import multiprocessing
import os
import queue
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from toy_models.config import ConfigError, from_dict, to_dict
from toy_models.interrupts import shielded, worker_signals
from toy_models.progress import Display, Progress, display, showing
from verify.schedule import compile_group, pick

RAY_HINT = "The ray executor needs the optional extra: pip install -e '.[ray]'."


def default_workers() -> int:
    """Worker processes for this machine: one per core, at most one per 3 GiB of memory."""
    cores = os.cpu_count() or 1
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = 8.0
    return max(1, min(cores, int(mem_gib // 3)))


RUN_CORES = 1  # every run executes on exactly this many cores (see the module docstring)


def _pin(index: int) -> None:
    """Pin this process to RUN_CORES cores chosen by ``index``, before it starts JAX: XLA sizes its thread pool
    by the CPUs a process may use and splits loops (and so sums) by it, so a fixed core count per run makes the
    bits of a run independent of the executor and of how many runs share the machine."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    start = (index * RUN_CORES) % len(cpus)
    os.sched_setaffinity(0, set(cpus[start:start + RUN_CORES]) or {cpus[0]})


def exit_with_parent(poll_s: float = 1.0, parent: int | None = None) -> None:
    """Start a daemon thread that ends this process when its parent is gone (it is re-parented): a driver killed
    by a signal it cannot clean up after (SIGKILL) must not leave workers training into the cache. ``parent``
    is the driver's pid as the driver saw it, so a driver that died while this process was still starting is
    noticed too."""
    parent = os.getppid() if parent is None else parent

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(counter, events, driver: int) -> None:
    """Process-pool initializer: each worker takes the next core, ends with its parent, leaves Ctrl-C to the
    parent and stops cleanly on its SIGTERM, and relays its progress to the parent (or shows none)."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _pin(index)
    exit_with_parent(parent=driver)
    worker_signals()
    from toy_models.progress import relay_to, set_display

    if events is None:
        set_display(Display("off"))
    else:
        relay_to(events.put)


# ------------------------------------------------------------------------------------------------
# work items: a base config or a run spec, as plain dicts (picklable, and checked on arrival)


def _item(obj) -> tuple[str, dict]:
    from toy_models.pretrain import BaseConfig

    return ("base" if isinstance(obj, BaseConfig) else "run", to_dict(obj))


def _label(kind: str, data: dict) -> str:
    if kind == "base":
        return f"base d_model {data['model']['d_model']}"
    t = data["train"]
    return f"{t['method']} seed {t['seed']} lr {t['lr']:g}"


def _do(kind: str, data: dict) -> dict:
    """Execute one work item in this process; returns its directory name and summary line."""
    from toy_models.finetune import RunSpec, finetune
    from toy_models.pretrain import BaseConfig, pretrain
    from toy_models.runs import source_hash

    t0 = time.time()
    if kind == "base":
        base = pretrain(from_dict(BaseConfig, data))
        return {"dir": base.directory.name, "source": source_hash(), "line": f"{time.time() - t0:.0f} s"}
    res = finetune(from_dict(RunSpec, data))
    s = res.summary
    return {"dir": res.directory.name, "source": source_hash(),
            "line": f"{s['stopped_at']} steps ({s['reason']}), gain {s['gain']:+.3f}, {time.time() - t0:.0f} s"}


def _worker_task(kind: str, data: dict) -> dict:
    return _do(kind, data)


# ------------------------------------------------------------------------------------------------


def _show_events(events, stop: threading.Event) -> None:
    """Driver thread: display the progress events workers relay (with the display current in the driver while it
    executes the plan), until ``stop`` is set and the queue is drained. The driver never writes into the queue,
    so it can never block on it."""
    from toy_models.progress import replay

    bars: dict = {}
    while True:
        try:
            replay(events.get(timeout=0.1), bars)
        except queue.Empty:
            if stop.is_set():
                break
        except (EOFError, OSError):  # a worker killed while writing; nothing more can come
            break
    for bar in list(bars.values()):  # runs whose workers were stopped before they finished
        bar.abandon()


def _item_dir(kind: str, data: dict) -> Path:
    """The run directory a work item writes."""
    from toy_models.finetune import RunSpec
    from toy_models.pretrain import BaseConfig
    from toy_models.runs import run_dir

    if kind == "base":
        return run_dir("base", from_dict(BaseConfig, data))
    spec = from_dict(RunSpec, data)
    return run_dir(spec.train.method, spec)


def _stop_workers(pool, workers: list, inflight: dict) -> None:
    """Stop the pool's worker processes now and remove what the runs in flight had written: SIGTERM first (a worker
    removes the partial folder of its run and exits at once), SIGKILL for one still busy in a long computation
    after 5 s; then every in-flight run's partial folder that nobody writes any more is removed. Signals are
    ignored meanwhile, so a second Ctrl-C cannot interrupt the cleanup."""
    from toy_models.run_store import discard_partial

    with shielded():
        for proc in workers:
            proc.terminate()
        deadline = time.monotonic() + 5
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        pool.shutdown(wait=True, cancel_futures=True)
        for kind, data, *_ in list(inflight.values()):
            discard_partial(_item_dir(kind, data))


def execute(plan, *, workers: int = 1, executor: str = "local", address: str | None = None) -> None:
    """Run the plan's missing bases, then its missing runs, on the chosen executor; progress goes to the
    current display (``toy_models.progress``)."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"Option `--executor` must be 'local' or 'ray', got {executor!r}.")
    if workers < 1:
        raise ConfigError(f"Option `--workers` must be at least 1, got {workers}.")
    stages = [[_item(b) for b in plan.missing_bases()], [_item(s) for s in plan.missing_runs()]]
    total = sum(len(s) for s in stages)
    if total == 0:
        return
    shown = display()
    bar = Progress(f"plan {plan.profile.name}", total, unit="run")
    done = [0]

    def finished(kind, data, result):
        done[0] += 1
        bar.update(done[0])
        shown.log_line(f"[{done[0]}/{total}] {_label(kind, data)}: {result['line']}")

    try:
        if executor == "ray":
            for stage in (s for s in stages if s):
                _run_ray(stage, address, finished)
        else:
            _run_local(stages, workers, shown, finished)
    except BaseException:
        bar.abandon()
        raise
    bar.close()


def _run_local(stages: list, workers: int, shown: Display, finished) -> None:
    """Run the stages on local worker processes (bases first: runs start from them), relaying progress to ``shown``;
    on any exception or signal the workers are stopped and what they were writing removed."""
    ctx = multiprocessing.get_context("spawn")
    counter, events = ctx.Value("i", 0), (ctx.Queue() if shown.on else None)
    stop = threading.Event()
    shower = None if events is None else threading.Thread(target=_show_events, args=(events, stop), daemon=True)
    if shower is not None:
        shower.start()
    try:
        size = min(workers, max(len(s) for s in stages))
        before = set(multiprocessing.active_children())
        inflight: dict = {}
        with ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=_init_worker,
                                 initargs=(counter, events, os.getpid())) as pool:
            try:
                for stage in stages:  # bases first: runs start from them
                    _run_stage(pool, size, stage, finished, inflight)
            except BaseException:
                _stop_workers(pool, [p for p in multiprocessing.active_children() if p not in before], inflight)
                raise
    finally:
        if shower is not None:
            stop.set()
            shower.join(5)


def _run_stage(pool, workers: int, stage: list, finished, running: dict | None = None) -> None:
    """Keep ``workers`` items of a stage in flight, the next one chosen by ``verify.schedule.pick``; ``running``
    (future -> (kind, data, group)) holds the items in flight, for the caller to clean up after an interrupt."""
    waiting = [(kind, data, compile_group(kind, data)) for kind, data in stage]
    running = {} if running is None else running
    compiled: set = set()
    while waiting or running:
        while waiting and len(running) < workers:
            kind, data, group = waiting.pop(pick([g for *_, g in waiting], compiled, {g for *_, g in running.values()}))
            with shielded():  # a worker process started here inherits Ctrl-C ignored: only the driver takes it
                running[pool.submit(_worker_task, kind, data)] = (kind, data, group)
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            kind, data, group = running.pop(fut)
            compiled.add(group)
            finished(kind, data, fut.result())


# ------------------------------------------------------------------------------------------------
# Ray


def _ray_task(kind: str, data: dict, driver_root: str, driver_source: str, driver_base: dict | None,
              verify_level: str = "full") -> dict:
    """Run one item on a Ray worker: into the driver's cache if this machine sees it, else into a temporary
    folder whose files are returned (with the base model the run started from). Cached runs are checked at the
    driver's ``verify_level``."""
    if "jax" not in sys.modules:  # a fresh Ray worker: pin it before JAX starts (one core, chosen by pid)
        _pin(os.getpid())
    from toy_models.runs import source_hash

    if source_hash() != driver_source:
        raise RuntimeError(f"Ray worker code differs from the driver's (source hash {source_hash()} vs {driver_source}).")
    root = Path(driver_root)
    shared = root.is_dir() and os.access(root, os.W_OK)
    tmp = None if shared else tempfile.mkdtemp(prefix="threegate-ray-")
    os.environ["THREEGATE_RUNS"] = str(root if shared else tmp)
    from toy_models.run_store import VERIFY_ENV

    os.environ[VERIFY_ENV] = verify_level
    try:
        if not shared and driver_base is not None:  # the base travels with the task
            _unpack(driver_base["tar"], Path(tmp))
        with showing(Display("off")):
            result = _do(kind, data)
        if not shared:
            result["tar"] = _pack(Path(tmp), result["dir"])
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _pack(root: Path, name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root / name, arcname=name)
    return buf.getvalue()


def _unpack(blob: bytes, root: Path) -> None:
    """Unpack a run folder into ``root`` atomically (into a temporary folder, then rename under the run's lock),
    unless a good copy of that run is already there."""
    from toy_models.run_store import run_lock, verified_or_quarantined

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".unpack-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        for entry in tmp.iterdir():
            target = root / entry.name
            with run_lock(target):
                if not verified_or_quarantined(target):
                    os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_ray(stage, address: str | None, finished) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    from toy_models.pretrain import BaseConfig
    from toy_models.run_store import verify_level
    from toy_models.runs import run_dir, runs_root, source_hash

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": os.cpu_count() or 1}))
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    remote = ray.remote(num_cpus=1)(_ray_task)
    futures = {}
    for kind, data in stage:
        base_blob = None
        if kind == "run":
            base_dir = run_dir("base", from_dict(BaseConfig, data["base"]))
            if base_dir.exists():
                base_blob = {"tar": _pack(base_dir.parent, base_dir.name)}
        futures[remote.remote(kind, data, str(root), source_hash(), base_blob, verify_level())] = (kind, data)
    pending = list(futures)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        result = ray.get(ready[0])
        if "tar" in result:
            _unpack(result.pop("tar"), root)
        finished(*futures[ready[0]], result)
