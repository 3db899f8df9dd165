import json

from click.testing import CliRunner
from PIL import Image

from pipelines.cli import main


def test_ingest_validate_inspect_cli(libero_raw, tmp_path):
    raw = libero_raw((("put the black bowl on the plate", [0, 2], 20),))
    runner = CliRunner()
    out = tmp_path / "ds"
    res = runner.invoke(main, ["ingest", str(raw), "-o", str(out), "--workers", "1", "--format", "v2.1",
                               "--vcodec", "h264"])
    assert res.exit_code == 0, res.output
    assert "wrote 2/2 episodes" in res.output
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["total_videos"] == 4
    assert info["features"]["observation.images.image"]["info"]["video.codec"] == "h264"
    assert json.loads((out / "wamdata_ingest_config.json").read_text())["source"] == "libero"
    res = runner.invoke(main, ["validate", str(out)])
    assert res.exit_code == 0 and "valid" in res.output
    res = runner.invoke(main, ["inspect", str(out), "--episode", "1", "-o", str(tmp_path / "ep1.png")])
    assert res.exit_code == 0, res.output
    w, h = Image.open(tmp_path / "ep1.png").size
    assert w > 400 and h > 400
    (out / "videos/chunk-000/observation.images.image/episode_000001.mp4").unlink()
    res = runner.invoke(main, ["validate", str(out)])
    assert res.exit_code == 1 and "video file missing" in res.output


def test_ingest_cli_rejects_bad_options(libero_raw, tmp_path):
    raw = libero_raw((("put the black bowl on the plate", [0], 20),))
    res = CliRunner().invoke(main, ["ingest", str(raw), "-o", str(tmp_path / "x"), "--format", "v9"])
    assert res.exit_code == 2 and "v9" in res.output
    res = CliRunner().invoke(main, ["ingest", str(raw), "-o", str(tmp_path / "x"), "--fps", "-3"])
    assert res.exit_code == 1 and "fps must be positive, got -3.0" in res.stderr and "Traceback" not in res.output
