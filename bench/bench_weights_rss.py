"""Peak RSS of loading each full-size Wan2.2 component from its release file, random weights (CPU).

    for each component (vae | t5 | dit):
      1. write full-size random weights in the release layout under --dir, in a child process, if absent:
         Wan2.2_VAE.pth (fp32, 705 M params), models_t5_umt5-xxl-enc-bf16.pth (bf16, 5.7 B),
         diffusion_pytorch_model-0000{1,2,3}-of-00003.safetensors + config.json (bf16, 5.0 B)
         (names and shapes: the official modules', tests/data/wan22_release_keys.json)
      2. in a fresh child process: imports (anchor RSS) -> open_component(path).load(dtype) -> VmHWM, then
       every weight read once (as a first forward does) -> VmHWM, RssAnon / RssFile
    prints  weights GB | anchor RSS | after load | peak RSS | anon/file | (peak - anchor) / weights
            (1.0 = exactly one copy of the weights; a memory-mapped .pth is file-backed page cache)

    .venv/bin/python bench/bench_weights_rss.py --dir /tmp/wan_full [--components vae,t5,dit] [--delete]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "tests" / "data" / "wan22_release_keys.json"
FILES = {"vae": "Wan2.2_VAE.pth", "t5": "models_t5_umt5-xxl-enc-bf16.pth", "dit": "dit"}
DTYPE = {"vae": "float32", "t5": "bfloat16", "dit": "bfloat16"}
KIND = {"vae": "vae", "t5": "text", "dit": "dit"}


def names_shapes(comp: str) -> dict[str, tuple]:
    raw = json.loads(KEYS.read_text())
    if comp == "vae":
        return {k: tuple(v) for k, v in raw["vae"].items()}
    out = {}
    for k, v in raw[comp]["tensors"].items():
        if k.startswith("blocks.0."):
            for i in range(raw[comp]["num_layers"]):
                out[f"blocks.{i}.{k[9:]}"] = tuple(v)
        else:
            out[k] = tuple(v)
    return out


def write(comp: str, d: Path) -> None:
    import torch

    dtype = getattr(torch, DTYPE[comp])
    g = torch.Generator().manual_seed(0)
    shapes = names_shapes(comp)

    def rand(shape):
        return torch.empty(shape, dtype=dtype).normal_(0, 0.02, generator=g)

    if comp != "dit":
        tmp = d / (FILES[comp] + ".tmp")
        torch.save({k: rand(s) for k, s in shapes.items()}, tmp)
        tmp.rename(d / FILES[comp])
        return
    from safetensors.torch import save_file

    out = d / "dit"
    out.mkdir(exist_ok=True)
    names = list(shapes)
    parts = [names[i::3] for i in range(3)]
    for i, part in enumerate(parts):
        save_file({k: rand(shapes[k]) for k in part},
                  str(out / f"diffusion_pytorch_model-0000{i + 1}-of-00003.safetensors"))
    (out / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": 3072, "eps": 1e-06,
                                                 "ffn_dim": 14336, "freq_dim": 256, "in_dim": 48, "model_type": "ti2v",
                                                 "num_heads": 24, "num_layers": 30, "out_dim": 48, "text_len": 512}))


def hwm_kb() -> tuple[int, int, int]:
    st = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return tuple(int(st[k].split()[0]) for k in ("VmHWM", "RssAnon", "RssFile"))


def measure(comp: str, d: Path) -> dict:
    import torch

    from cache_jobs.weights.component import open_component

    anchor = hwm_kb()[0]
    t = time.perf_counter()
    c = open_component(d / FILES[comp], KIND[comp])
    model = c.load(getattr(torch, DTYPE[comp]))
    secs = time.perf_counter() - t
    uniq = {p.data_ptr(): p for p in model.parameters()}.values()     # tied tensors once
    n = sum(p.numel() for p in uniq)
    nbytes = sum(p.numel() * p.element_size() for p in uniq)
    loaded, anon0, file0 = hwm_kb()
    with torch.no_grad():       # what a first forward does: every weight page read in
        for p in model.parameters():
            p.sum()
    peak, anon, filed = hwm_kb()
    gb = 1024 / 1e9
    return {"component": comp, "layout": c.layout, "params_B": n / 1e9, "weights_GB": nbytes / 1e9,
            "anchor_rss_GB": anchor * gb, "after_load_peak_GB": loaded * gb, "after_load_anon_GB": anon0 * gb,
            "after_load_file_GB": file0 * gb, "peak_rss_GB": peak * gb, "end_anon_GB": anon * gb,
            "end_file_GB": filed * gb, "peak_minus_anchor_over_weights": (peak - anchor) * 1024 / nbytes,
            "load_s": secs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--components", default="vae,t5,dit")
    ap.add_argument("--delete", action="store_true", help="remove the written weights afterwards")
    ap.add_argument("--child", default=None)
    a = ap.parse_args()
    if a.child:
        what, comp = a.child.split(":")
        if what == "write":
            write(comp, a.dir)
        else:
            print("RESULT " + json.dumps(measure(comp, a.dir)))
        return
    a.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for comp in a.components.split(","):
        if not (a.dir / FILES[comp]).exists():
            t = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--dir", str(a.dir), "--child", f"write:{comp}"], check=True,
                           cwd=ROOT)
            print(f"wrote {comp} in {time.perf_counter() - t:.0f} s", flush=True)
        res = subprocess.run([sys.executable, __file__, "--dir", str(a.dir), "--child", f"load:{comp}"], check=True,
                             cwd=ROOT, capture_output=True, text=True)
        row = json.loads(next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))[7:])
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.delete:
            p = a.dir / FILES[comp]
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    print(f"{'component':10s} {'weights GB':>10s} {'anchor GB':>9s} {'after load GB':>13s} {'peak GB':>8s} "
          f"{'anon/file GB':>13s} {'(peak-anchor)/weights':>22s}")
    for r in rows:
        print(f"{r['component']:10s} {r['weights_GB']:10.2f} {r['anchor_rss_GB']:9.2f} {r['after_load_peak_GB']:13.2f} "
              f"{r['peak_rss_GB']:8.2f} {r['end_anon_GB']:6.2f}/{r['end_file_GB']:<6.2f} "
              f"{r['peak_minus_anchor_over_weights']:22.2f}")


if __name__ == "__main__":
    main()
