"""The cache job on a local 2-worker dask.distributed cluster: same cache as in-process, one model load per worker."""

from dataclasses import replace

import numpy as np
import pytest
import zarr
from _factories_cache import job_config, layout_file, tiny_models, write_npz_dataset

from cache_jobs import store as S
from cache_jobs.job import run_cache
from cache_jobs.models import loaded_models
from schemas import cache as C


def _arrays(cache):
    g = zarr.open_group(str(cache), mode="r")
    return {n: g[n][:] for n in (*S.ROW_ARRAYS, C.ARR_TEXT_EMB, C.ARR_TEXT_KEYS)}


def test_two_worker_cluster_matches_in_process(tmp_path):
    from dask.distributed import Client, LocalCluster

    vae, text = tiny_models(tmp_path)
    data = write_npz_dataset(tmp_path / "data", [10, 6, 9, 5])
    lay = layout_file(tmp_path)
    ref = run_cache(job_config(data, tmp_path / "ref", vae, text, lay, workers=0), progress=False)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        cfg = job_config(data, tmp_path / "dask", vae, text, lay, scheduler=cluster.scheduler_address)
        got = run_cache(cfg, progress=False)
        per_worker = client.run(loaded_models)
    assert got["num_chunks"] == ref["num_chunks"] == 30 and got["units_run"] == ref["units_run"] == 4
    assert len(per_worker) == 2
    for keys in per_worker.values():          # the plugin loaded the VAE once in each worker process
        assert [k[0] for k in keys].count("vae") == 1
    assert sum([k[0] for k in keys].count("text") for keys in per_worker.values()) == 1
    _assert_same_cache(tmp_path / "dask", tmp_path / "ref")


def _assert_same_cache(got, ref):
    a, b = _arrays(got), _arrays(ref)
    for n in a:
        if n == C.ARR_LATENTS:
            fa = a[n].astype(np.uint32) << 16
            fb = b[n].astype(np.uint32) << 16
            np.testing.assert_allclose(fa.view(np.float32), fb.view(np.float32), rtol=2 ** -7, atol=1e-5)
        else:
            np.testing.assert_array_equal(a[n], b[n], err_msg=n)
    assert S.verify(got)["ok"]


@pytest.mark.parametrize("workers", [2])
def test_local_cluster_started_by_the_job(tmp_path, workers):
    vae, text = tiny_models(tmp_path)
    data = write_npz_dataset(tmp_path / "data", [6, 5])
    got = run_cache(job_config(data, tmp_path / "c", vae, text, layout_file(tmp_path), workers=workers),
                    progress=False)
    assert got["num_chunks"] == 11 and not got["failed_episodes"]
    assert S.verify(tmp_path / "c")["ok"]


def test_lost_workers_units_are_retried_and_job_goes_on(tmp_path):
    """Both workers of a 2-worker LocalCluster killed mid-unit (SIGKILL, as from the OOM killer), each while encoding
    a different unit: the units run again on the restarted workers, every other unit is kept, and the cache equals a
    clean in-process run (issue 11, item 9; before: FutureCancelledError 'already forgotten', exit 1)."""
    vae, text = tiny_models(tmp_path)
    data = write_npz_dataset(tmp_path / "data", [10, 6, 9, 5])
    lay = layout_file(tmp_path)
    ref = run_cache(job_config(data, tmp_path / "ref", vae, text, lay, workers=0), progress=False)
    for ep in (0, 1):                         # units 0 and 1: the first unit each worker takes
        (data / f"kill_{ep}").touch()
    got = run_cache(job_config(data, tmp_path / "dask", vae, text, lay, workers=2,
                               reader="_factories_cache:KillOnceReader"), progress=False)
    assert sorted(p.name for p in data.glob("kill*")) == ["killed_0", "killed_1"]     # both workers did die
    assert got["num_chunks"] == ref["num_chunks"] == 30 and not got["failed_episodes"]
    assert got["units_run"] == 4
    _assert_same_cache(tmp_path / "dask", tmp_path / "ref")


@pytest.mark.slow
def test_unit_that_always_kills_its_worker_is_reported_and_the_rest_kept(tmp_path):
    """A unit whose worker dies every time (dask's allowed-failures reached: KilledWorker) ends the job with one
    WamdataError naming that unit, after every other unit is written; the rerun resumes only that unit."""
    import dask
    import distributed  # noqa: F401 - loads distributed's config defaults before dask.config.set records them

    from schemas.errors import WamdataError

    vae, text = tiny_models(tmp_path)
    data = write_npz_dataset(tmp_path / "data", [10, 6, 9, 5])
    lay = layout_file(tmp_path)
    (data / "kill_always_2").touch()                    # episode 2 = unit 2 of 4
    cfg = job_config(data, tmp_path / "c", vae, text, lay, workers=2, reader="_factories_cache:KillOnceReader")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(WamdataError, match=r"1 task\(s\) failed after retries on other workers \(unit-2: "
                                               r"KilledWorker.*rerun the same command to resume"):
            run_cache(cfg, progress=False)
    assert sorted(p.name for p in (tmp_path / "c" / S.UNITS_DIR).glob("unit-*.json")) == [
        "unit-000000.json", "unit-000001.json", "unit-000003.json"]
    (data / "kill_always_2").unlink()
    got = run_cache(cfg, progress=False)
    assert got["units_run"] == 1 and got["units_skipped"] == 3 and got["num_chunks"] == 30
    assert S.verify(tmp_path / "c")["ok"]


@pytest.mark.slow
def test_stalled_worker_ends_the_job_within_the_bound(tmp_path):
    """A worker that stops making progress (alive, never finishing) ends the wait after the stall bound with one
    WamdataError naming the pending units, instead of hanging the driver."""
    import time

    from schemas.errors import WamdataError

    vae, text = tiny_models(tmp_path)
    data = write_npz_dataset(tmp_path / "data", [6, 5])
    (data / "hang_0").touch()
    cfg = job_config(data, tmp_path / "c", vae, text, layout_file(tmp_path), workers=1,
                     reader="_factories_cache:KillOnceReader")
    cfg = replace(cfg, cluster=replace(cfg.cluster, stall_timeout_s=30.0))
    t0 = time.monotonic()
    with pytest.raises(WamdataError, match=r"no task finished in 30 s \(2 pending: unit-0, unit-1\)"):
        run_cache(cfg, progress=False)
    assert time.monotonic() - t0 < 600                   # far below the hour the worker sleeps
