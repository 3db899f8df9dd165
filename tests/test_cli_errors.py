"""Every `wamdata` command given a bad command line exits non-zero with one clear line and no traceback
(issue 11, item 6); `--debug` brings the traceback back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _factories_cache import layout_file, tiny_models, write_npz_dataset
from click.testing import CliRunner

from pipelines.cli import main


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    t = tmp_path_factory.mktemp("cli")
    (t / "file.txt").write_text("not a directory\n")
    (t / "empty").mkdir()
    raw = t / "raw"                                   # one tiny LIBERO file: a valid RAW argument
    from pipelines.synth.libero import write_libero_file

    write_libero_file(raw, n_demos=1, T=6, size=64, demo_ids=[0], instruction="pick", variant="original")
    ds = t / "dataset"                                # looks like a LeRobot dataset: not a cache, not shards
    (ds / "meta").mkdir(parents=True)
    (ds / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 10}))
    (ds / "data").mkdir()
    npz = write_npz_dataset(t / "npz", [5])           # a dataset the test reader can plan a cache for
    vae, text = tiny_models(t)
    (t / "bad.json").write_text("{not json")
    return {"tmp": t, "file": t / "file.txt", "empty": t / "empty", "raw": raw, "ds": ds, "npz": npz, "vae": vae,
            "text": text, "layout": layout_file(t), "bad_json": t / "bad.json"}


# (id, argv with {placeholders} from `paths`)
BAD = [
    ("ingest-out-is-file", "ingest {raw} -o {file}"),
    ("ingest-out-under-file", "ingest {raw} -o {file}/sub"),
    ("ingest-raw-is-not-data", "ingest {file} -o {tmp}/o1"),
    ("ingest-raw-empty-dir", "ingest {empty} -o {tmp}/o2"),
    ("ingest-missing-raw", "ingest {tmp}/nope -o {tmp}/o3"),
    ("ingest-bad-fps", "ingest {raw} -o {tmp}/o4 --fps -3"),
    ("validate-empty-dir", "validate {empty}"),
    ("validate-file", "validate {file}"),
    ("inspect-empty-dir", "inspect {empty} -o {tmp}/x.png"),
    ("inspect-png-under-file", "inspect {ds} -o {file}/x.png"),
    ("demo-out-is-file", "demo -o {file}"),
    ("cache-vae-not-a-vae", "cache {npz} -o {tmp}/c1 --vae {ds} --text-encoder {text} --layout {layout} "
                            "--reader _factories_cache:NpzReader --workers 0 --no-progress"),
    ("cache-vae-empty-dir", "cache {npz} -o {tmp}/c2 --vae {empty} --text-encoder {text} --layout {layout} "
                            "--reader _factories_cache:NpzReader --workers 0 --no-progress"),
    ("cache-not-a-dataset", "cache {empty} -o {tmp}/c3 --vae {vae} --text-encoder {text} --workers 0"),
    ("cache-bad-layout", "cache {npz} -o {tmp}/c4 --vae {vae} --text-encoder {text} --layout {file} "
                         "--reader _factories_cache:NpzReader --workers 0"),
    ("cache-bad-reader", "cache {npz} -o {tmp}/c5 --vae {vae} --text-encoder {text} --reader nosuchmod:X"),
    ("cache-out-is-file", "cache {npz} -o {file} --vae {vae} --text-encoder {text} --layout {layout} "
                          "--reader _factories_cache:NpzReader --workers 0"),
    ("verify-empty-dir", "verify {empty}"),
    ("verify-dataset", "verify {ds}"),
    ("pack-dataset", "pack {ds} -o {tmp}/p1"),
    ("pack-empty-dir", "pack {empty} -o {tmp}/p2"),
    ("train-empty-dir", "train {empty} -o {tmp}/r1 --steps 1"),
    ("train-dataset", "train {ds} -o {tmp}/r2 --steps 1"),
    ("train-bad-config", "train {empty} -o {tmp}/r3 --config {bad_json}"),
    ("predict-not-a-run", "predict {empty} --shards {empty}"),
    ("predict-dataset-shards", "predict {ds} --shards {ds}"),
    ("export-official-out-under-file", "export-official {empty} -o {file}/x.pt"),
    ("import-official-out-under-file", "import-official {file} --shards {empty} -o {file}/run"),
    ("latency-bad-latent", "latency --latent abc"),
    ("latency-bad-config", "latency --config {bad_json}"),
    ("no-such-command", "frobnicate"),
]


def _argv(template: str, paths: dict) -> list[str]:
    return [a.format(**paths) for a in template.split()]


@pytest.mark.parametrize("name,template", BAD, ids=[b[0] for b in BAD])
def test_bad_command_line_is_one_line(paths, name, template):
    res = CliRunner().invoke(main, _argv(template, paths))
    out = res.output
    assert res.exit_code not in (0, None), f"{name} exited 0:\n{out}"
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), (
        f"{name} raised {type(res.exception).__name__}: {res.exception}")
    assert "Traceback" not in out, out
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1, f"{name}:\n{res.stderr}"
    if res.exit_code != 2:                    # not a click usage error: the error line is all there is
        assert res.stderr.strip() == errors[0], f"{name}:\n{res.stderr}"


def test_pack_names_what_it_was_given(paths):
    res = CliRunner().invoke(main, _argv("pack {empty} -o {tmp}/p3", paths))
    assert res.stderr.strip() == f"Error: {paths['empty']}: no manifest.json; not a `wamdata cache` output"


def test_usage_error_keeps_clicks_usage_lines(paths):
    """Click's own usage errors (unknown option) are unchanged: usage + hint + error, exit 2."""
    res = CliRunner().invoke(main, ["pack", "--frobnicate"])
    assert res.exit_code == 2 and "No such option '--frobnicate'" in res.stderr and res.stderr.startswith("Usage:")


def test_debug_brings_the_traceback_back(paths):
    res = CliRunner().invoke(main, ["--debug", *_argv("pack {empty} -o {tmp}/p9", paths)])
    assert res.exit_code != 0 and res.exception is not None and not isinstance(res.exception, SystemExit)


@pytest.mark.parametrize("entry", ["from pipelines.cli import run; run()",
                                   "from fastwam_train.__main__ import main; main()"])
def test_console_entry_points_print_one_line(paths, entry):
    """The installed `wamdata` entry (pipelines.cli:run) and `python -m fastwam_train`, as real processes."""
    import os
    import subprocess
    import sys

    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": repo, "WAMDATA_DEBUG": ""}
    res = subprocess.run([sys.executable, "-c", entry, "train", str(paths["empty"]), "-o", str(paths["tmp"] / "r9")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1 and res.stdout == "", res
    assert res.stderr.strip() == f"Error: {paths['empty']}: no pack_meta.json (is this a `wamdata pack` output?)"


@pytest.mark.parametrize("template,expect", [
    ("export-official {empty} -o {file}/x.pt", "{file}/x.pt is under {file}, which is a file"),
    ("import-official {file} --shards {empty} -o {file}/run", "{file}/run is under {file}, which is a file")])
def test_official_outputs_refused_before_any_work(paths, template, expect):
    """export-/import-official check their output path up front, as every other command's -o does."""
    res = CliRunner().invoke(main, _argv(template, paths))
    assert res.exit_code == 2 and expect.format(**paths) in res.stderr, res.stderr
