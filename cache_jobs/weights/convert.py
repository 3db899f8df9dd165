"""`wamdata convert SRC -o OUT`: any supported layout -> a diffusers-format repo dir, written once, atomically.

    SRC (+ --vae/--text-encoder/--tokenizer/--dit overrides) -> OUT/.<name>.tmp-<pid>/
        vae/           config.json + diffusion_pytorch_model.safetensors          (AutoencoderKLWan)
        text_encoder/  config.json + model[-0000i-of-0000n].safetensors [+ index]  (UMT5EncoderModel)
        tokenizer/     the tokenizer files, copied
        transformer/   config.json + diffusion_pytorch_model-0000i-of-0000n.safetensors + index (when a DiT
                       is found or given; WanTransformer3DModel)
        model_index.json
    -> each written component re-read and its content digest compared with the source's -> rename to OUT.

Tensors are streamed into shards of at most `max_shard_bytes` (one shard in memory at a time); names, shapes
and dtypes are kept, so the cache key (content digest) of OUT equals that of SRC.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cache_jobs.weights.component import Component, NotFound, open_component
from cache_jobs.weights.resolve import find_tokenizer, is_tokenizer_dir
from schemas.errors import SchemaError

FILE_STEM = {"vae": "diffusion_pytorch_model", "text": "model", "dit": "diffusion_pytorch_model"}
SUBDIR = {"vae": "vae", "text": "text_encoder", "dit": "transformer"}
LIBRARY = {"vae": ["diffusers", "AutoencoderKLWan"], "text": ["transformers", "UMT5EncoderModel"],
           "dit": ["diffusers", "WanTransformer3DModel"]}


def write_tensors(comp: Component, d: Path, max_shard_bytes: int) -> list[str]:
    from safetensors.torch import save_file

    stem = FILE_STEM[comp.kind]
    shards, cur, size, total = [], {}, 0, 0

    def flush():
        nonlocal cur, size
        if cur:
            name = f".shard{len(shards):05d}.safetensors"
            save_file(cur, str(d / name), metadata={"format": "pt"})
            shards.append((name, list(cur)))
            cur, size = {}, 0

    for name, t in comp.iter_tensors():
        nbytes = t.numel() * t.element_size()
        if cur and size + nbytes > max_shard_bytes:
            flush()
        cur[name] = t.contiguous()
        size += nbytes
        total += nbytes
    flush()
    n = len(shards)
    final = [f"{stem}.safetensors"] if n == 1 else [f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    weight_map = {}
    for (tmp, names), fin in zip(shards, final, strict=True):
        os.replace(d / tmp, d / fin)
        weight_map.update(dict.fromkeys(names, fin))
    if n > 1:
        (d / f"{stem}.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=1))
    return final


def write_config(comp: Component, d: Path) -> None:
    if comp.kind == "text":
        from cache_jobs.weights.t5 import umt5_config

        umt5_config(comp.config).save_pretrained(str(d))
    else:
        comp.build_empty().save_config(str(d))


def convert(out: str | Path, model: str | None = None, vae: str | None = None, text: str | None = None,
            tokenizer: str | None = None, dit: str | None = None, max_shard_bytes: int = 2 << 30,
            verify: bool = True) -> dict:
    out = Path(out)
    if out.exists():
        raise SchemaError(f"{out} already exists; convert writes a new dir (remove it or pick another -o)")
    if model is None and (vae is None or text is None):
        raise SchemaError("give SRC (a model dir), or both --vae and --text-encoder")
    comps = {"vae": open_component(vae or model, "vae"), "text": open_component(text or model, "text")}
    if dit is not None:
        comps["dit"] = open_component(dit, "dit")
    elif model is not None:
        try:
            comps["dit"] = open_component(model, "dit")
        except NotFound:
            pass
    for comp in comps.values():
        comp.verify()               # strict names + shapes before anything is written
    if tokenizer is not None:
        tok = Path(tokenizer)
        if not is_tokenizer_dir(tok):
            raise SchemaError(f"--tokenizer {tok}: no tokenizer files there")
    else:
        tok = find_tokenizer(Path(text) if text else comps["text"].source, Path(model) if model else None)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    report = {"out": str(out), "components": {}}
    try:
        for kind, comp in comps.items():
            d = tmp / SUBDIR[kind]
            d.mkdir()
            write_config(comp, d)
            files = write_tensors(comp, d, max_shard_bytes)
            report["components"][SUBDIR[kind]] = {"from": comp.describe(), "files": files,
                                                  "tensors": len(comp.mapping)}
            if verify:
                again = open_component(d, kind)
                if again.digest() != comp.digest():
                    raise SchemaError(f"{d}: written {kind} differs from {comp.describe()} (content digest)")
        (tmp / "tokenizer").mkdir()
        for f in sorted(Path(tok).iterdir()):
            if f.is_file() and f.suffix not in (".safetensors", ".pth", ".bin") and f.name != "config.json":
                shutil.copy2(f, tmp / "tokenizer" / f.name)
        report["components"]["tokenizer"] = {"from": str(tok)}
        index = {"_class_name": "WanPipeline", "tokenizer": ["transformers", "T5TokenizerFast"],
                 **{SUBDIR[k]: LIBRARY[k] for k in comps}}
        (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
        try:
            os.rename(tmp, out)     # atomic; fails if another convert finished OUT meanwhile
        except OSError as e:
            raise SchemaError(f"{out}: could not be put in place ({e.strerror}); another writer may have "
                              f"created it meanwhile") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report

