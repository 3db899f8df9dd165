"""One model component (VAE, umT5 text encoder, Wan DiT) found by content in a file or dir, in any layout.

    open_component(path, kind)      kind: "vae" | "text" | "dit"
      path: a diffusers repo root, a component dir (config.json + weights), the original release dir
            (Wan2.2_VAE.pth, models_t5_umt5-xxl-enc-bf16.pth, diffusion_pytorch_model*.safetensors +
            WanModel config.json), DiffSynth's converted safetensors, or one weight file
      -> Component: .layout ("diffusers" | "release"), .files, .config (diffusers/transformers kwargs),
         .mapping {target name: source name}: every source tensor has a target, every target of the model
         built from .config has a source of the same shape (checked before any weight is read)
    Component.load(dtype)   the model (AutoencoderKLWan | UMT5EncoderModel), built on the meta device and
                            filled tensor by tensor with assign=True: no second copy of the weights
    Component.digest()      sha256 over the architecture config + (target name, dtype, shape, bytes): equal for
                            the release file and its diffusers conversion

Files are told apart by their tensor names and shapes, never by file name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cache_jobs.weights import dit as D
from cache_jobs.weights import t5 as T
from cache_jobs.weights import vae as V
from cache_jobs.weights.tensors import TensorFile, prefer_safetensors, weight_files
from schemas.errors import SchemaError

KINDS = {"vae": "a Wan2.2 VAE (diffusers vae/ dir, Wan2.2_VAE.pth or DiffSynth's Wan2.2_VAE.safetensors)",
         "text": "a umT5 text encoder (diffusers text_encoder/ dir, models_t5_umt5-xxl-enc-bf16.pth or DiffSynth's "
                 ".safetensors)",
         "dit": "a Wan2.2 DiT (diffusers transformer/ dir, or diffusion_pytorch_model*.safetensors + config.json)"}
SUBDIR = {"vae": "vae", "text": "text_encoder", "dit": "transformer"}
LABEL = {("vae", "release"): "Wan2.2 VAE (release layout)", ("vae", "diffusers"): "Wan2.2 VAE (diffusers layout)",
         ("text", "release"): "umT5 encoder (Wan layout)", ("text", "diffusers"): "umT5 encoder (transformers layout)",
         ("dit", "release"): "Wan DiT (Wan layout)", ("dit", "diffusers"): "Wan DiT (diffusers layout)"}
_MARKERS = {("vae", "release"): V.RELEASE_MARKERS, ("vae", "diffusers"): V.DIFFUSERS_MARKERS,
            ("text", "release"): T.RELEASE_MARKERS, ("text", "diffusers"): T.DIFFUSERS_MARKERS,
            ("dit", "release"): D.RELEASE_MARKERS, ("dit", "diffusers"): D.DIFFUSERS_MARKERS}
_RENAME = {"vae": V.release_to_diffusers, "text": T.release_to_hf, "dit": D.original_to_diffusers}
_OPEN: dict[tuple, TensorFile] = {}


class NotFound(SchemaError):
    """The path holds no component of the requested kind (as opposed to a broken one)."""


def tensor_file(paths: list[Path]) -> TensorFile:
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    if key not in _OPEN:
        _OPEN[key] = TensorFile(paths)
    return _OPEN[key]


def forget(paths) -> None:
    """Drop the cached views of these files: a memory-mapped .pth's touched pages then leave the RSS once no
    model tensor refers to them."""
    names = {str(Path(p).resolve()) for p in paths}
    for key in [k for k in _OPEN if any(f[0] in names for f in k)]:
        del _OPEN[key]


_DIFFUSERS_NAMES = {
    "vae": (("encoder.", "decoder.", "quant_conv.", "post_quant_conv."), ("down_blocks", "up_blocks", "mid_block")),
    "text": (("shared.", "encoder."), (".SelfAttention.", ".DenseReluDense.")),
    "dit": (("blocks.", "condition_embedder.", "patch_embedding.", "proj_out.", "scale_shift_table"),
            (".attn1.", ".attn2.", "condition_embedder.")),
}


def _loose(names: list[str], kind: str, layout: str) -> bool:
    """Every name fits the layout (for one shard of a sharded checkpoint, which lacks some marker names)."""
    if layout == "release":
        return all(_RENAME[kind](n) is not None for n in names)
    prefixes, signs = _DIFFUSERS_NAMES[kind]
    return all(n.startswith(prefixes) for n in names) and any(s in n for n in names for s in signs)


def classify(names: list[str]) -> tuple[str, str] | None:
    """(kind, layout) of a file's tensor names: all marker names present, else every name fitting exactly one
    layout (a shard)."""
    s = set(names)
    for (kind, layout), marks in _MARKERS.items():
        if all(m in s for m in marks):
            return kind, layout
    fits = [k for k in _MARKERS if _loose(names, *k)]
    return fits[0] if len(fits) == 1 else None


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SchemaError(f"{p}: unreadable config ({e})") from None


def _config_kind(cfg: dict) -> str | None:
    cls = cfg.get("_class_name") or ""
    if cls == "AutoencoderKLWan":
        return "vae"
    if cls in ("WanTransformer3DModel", "WanModel") or D.is_original_config(cfg):
        return "dit"
    if cfg.get("model_type") in ("umt5", "t5") or any("T5" in a for a in cfg.get("architectures") or []):
        return "text"
    return None


@dataclass
class Component:
    kind: str
    layout: str
    files: tuple[Path, ...]
    config: dict
    mapping: dict[str, str] = field(default_factory=dict)
    source: Path | None = None      # the path the user gave

    @property
    def tensors(self) -> TensorFile:
        return tensor_file(list(self.files))

    def describe(self) -> str:
        return f"{LABEL[(self.kind, self.layout)]} from {self.tensors.describe()}"

    def target_shapes(self) -> dict[str, torch.Size]:
        tf = self.tensors
        return {t: tf.shape(s) for t, s in self.mapping.items()}

    # -- model --------------------------------------------------------------------------------------------
    def build_empty(self):
        from accelerate import init_empty_weights

        with init_empty_weights():
            if self.kind == "vae":
                from diffusers import AutoencoderKLWan

                return AutoencoderKLWan(**self.config)
            if self.kind == "text":
                from transformers import UMT5EncoderModel

                return UMT5EncoderModel(T.umt5_config(self.config))
            from diffusers import WanTransformer3DModel

            return WanTransformer3DModel(**{k: v for k, v in self.config.items() if not k.startswith("_")})

    def check(self, model) -> dict[str, torch.Size]:
        """Strict: the model's names/shapes equal the mapped file's, else one line naming file and key."""
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if self.kind == "text":
            expected.pop(T.TIED[0], None)
        have = self.target_shapes()
        tf = self.tensors
        for t, s in self.mapping.items():
            if t not in expected:
                raise SchemaError(f"{tf.origin(s)}: tensor {s!r} has no place in the {LABEL[(self.kind, self.layout)]}"
                                  f" built from its config")
            if have[t] != expected[t]:
                raise SchemaError(f"{tf.origin(s)}: tensor {s!r} has shape {tuple(have[t])}, the "
                                  f"{LABEL[(self.kind, self.layout)]} config expects {tuple(expected[t])}")
        missing = sorted(set(expected) - set(self.mapping))
        if missing:
            raise SchemaError(f"{tf.describe()}: lacks {len(missing)} tensor(s) of the "
                              f"{LABEL[(self.kind, self.layout)]}, first {missing[0]!r}")
        return expected

    def load(self, dtype: torch.dtype = torch.float32):
        model = self.build_empty()
        self.check(model)
        tf = self.tensors
        sd = {}
        for t, s in self.mapping.items():
            x = tf.get(s)
            sd[t] = x if x.dtype == dtype else x.to(dtype)
        if self.kind == "text":
            sd[T.TIED[0]] = sd[T.TIED[1]]
        model.load_state_dict(sd, strict=True, assign=True)
        del sd
        if self.kind == "text":
            model.tie_weights()         # one Parameter for shared / encoder.embed_tokens, as from_pretrained
        forget(self.files)
        left = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
        if left:
            raise SchemaError(f"{tf.describe()}: {left[0]!r} was not filled from the file")
        return model.eval()

    def iter_tensors(self):
        """(target name, tensor) in sorted target order, one tensor in memory at a time."""
        tf = self.tensors
        for t in sorted(self.mapping):
            yield t, tf.get(self.mapping[t])

    def arch(self) -> dict:
        if self.kind == "text":
            return {k: v for k, v in T.umt5_config(self.config).to_dict().items() if k in T.ARCH_KEYS}
        return {k: v for k, v in self.config.items() if not k.startswith("_")}

    def verify(self) -> Component:
        """Strict name/shape check against the model built (on the meta device) from the config; no weights read."""
        self.check(self.build_empty())
        return self

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps({"kind": self.kind, "arch": self.arch()}, sort_keys=True).encode())
        for t, x in self.iter_tensors():
            x = x.contiguous()
            h.update(f"{t}|{x.dtype}|{tuple(x.shape)}|".encode())
            h.update(x.view(torch.uint8).numpy() if x.numel() else b"")
        forget(self.files)
        return h.hexdigest()


# -- finding a component -----------------------------------------------------------------------------------
def _from_files(kind: str, files: list[Path], cfg_json: dict | None, where: Path) -> Component:
    tf = tensor_file(files)
    found = classify(tf.names())
    if found is None:
        raise SchemaError(f"{where}: tensors {tf.names()[:3]}... are none of the known layouts; expected {KINDS[kind]}")
    if found[0] != kind:
        raise SchemaError(f"{where}: holds {LABEL[found]}, expected {KINDS[kind]}")
    layout = found[1]
    names = tf.names()
    if layout == "release":
        rename = _RENAME[kind]
        mapping = {}
        for n in names:
            t = rename(n)
            if t is None:
                raise SchemaError(f"{tf.origin(n)}: tensor {n!r} has no place in the {LABEL[found]}")
            if t in mapping:
                raise SchemaError(f"{tf.origin(n)}: tensors {mapping[t]!r} and {n!r} map to the same {t!r}")
            mapping[t] = n
    else:
        mapping = {n: n for n in names}
        if kind == "text":
            if T.TIED[1] not in mapping and T.TIED[0] in mapping:
                mapping[T.TIED[1]] = mapping.pop(T.TIED[0])
            else:
                mapping.pop(T.TIED[0], None)
    shapes = {t: tuple(tf.shape(s)) for t, s in mapping.items()}
    src = tf.describe()
    if kind == "vae":
        if layout == "diffusers" and cfg_json is not None:
            config = V.derive_config(shapes, src)
            for k in ("latents_mean", "latents_std"):
                if len(cfg_json.get(k) or []) != config["z_dim"]:
                    raise SchemaError(f"{where}/config.json: {k} must have z_dim={config['z_dim']} entries")
                config[k] = list(cfg_json[k])
            for k, v in cfg_json.items():
                if k in config and k not in ("latents_mean", "latents_std") and _norm(v) != _norm(config[k]):
                    raise SchemaError(f"{where}/config.json: {k}={v!r}, the weights' shapes give {config[k]!r}")
            V.check_full_size(config, src)
        else:
            config = V.release_config(shapes, src)
    elif kind == "text":
        config = T.derive_config(shapes, src)
        if cfg_json is not None:
            for k in T.ARCH_KEYS:
                if k in cfg_json and k in config and cfg_json[k] != config[k]:
                    raise SchemaError(f"{where}/config.json: {k}={cfg_json[k]!r}, the weights' shapes give "
                                      f"{config[k]!r}")
            for k in ("relative_attention_max_distance", "feed_forward_proj", "layer_norm_epsilon"):
                if k in cfg_json:
                    config[k] = cfg_json[k]
    else:
        if cfg_json is None:
            raise SchemaError(f"{where}: a Wan DiT needs its config.json next to the weights")
        if D.is_original_config(cfg_json):
            config = D.diffusers_config(cfg_json, str(where), text_dim=shapes.get(
                "condition_embedder.text_embedder.linear_1.weight", (0, 4096))[1])
        else:
            config = dict(cfg_json)
    return Component(kind, layout, tuple(files), config, mapping, source=where)


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _survey(d: Path) -> dict[tuple[str, str] | None, list[Path]]:
    groups: dict = {}
    for f in weight_files(d):
        try:
            found = classify(tensor_file([f]).names())
        except SchemaError:
            found = None
        groups.setdefault(found, []).append(f)
    return {k: prefer_safetensors(v) if k else v for k, v in groups.items()}


def _found_text(d: Path, groups: dict) -> str:
    parts = [f"{len(fs)} file(s) of {LABEL[k]}" if k else f"{len(fs)} unrecognised weight file(s)"
             for k, fs in groups.items()]
    cfg = d / "config.json"
    if cfg.is_file():
        parts.append(f"config.json of {_read_json(cfg).get('_class_name') or _read_json(cfg).get('model_type') or '?'}")
    subs = [p.name + "/" for p in sorted(d.iterdir()) if p.is_dir()][:6]
    if subs:
        parts.append("dirs " + " ".join(subs))
    return ", ".join(parts) or "nothing"


def open_component(path: str | Path, kind: str) -> Component:
    p = Path(path)
    if not p.exists():
        raise NotFound(f"{p} does not exist; expected {KINDS[kind]}")
    if p.is_file():
        cfg = p.parent / "config.json"
        cfg_json = _read_json(cfg) if cfg.is_file() and _config_kind(_read_json(cfg)) == kind else None
        files = [p]
        if cfg_json is not None and kind == "dit":    # a shard of a sharded DiT: take all shards
            files = [f for f in weight_files(p.parent) if classify(tensor_file([f]).names()) == classify(
                tensor_file([p]).names())]
        return _from_files(kind, files, cfg_json, p)
    cfg = p / "config.json"
    cfg_json = _read_json(cfg) if cfg.is_file() else None
    if cfg_json is not None and _config_kind(cfg_json) == kind and weight_files(p):
        if not D.is_original_config(cfg_json):      # a diffusers/transformers component dir: all its weights
            return _from_files(kind, prefer_safetensors(weight_files(p)), cfg_json, p)
        groups = _survey(p)                         # a Wan release dir: the DiT files among the others
        files = [f for k, fs in groups.items() if k and k[0] == kind for f in fs]
        if files:
            return _from_files(kind, files, cfg_json, p)
    sub = p / SUBDIR[kind]
    if sub.is_dir():
        return open_component(sub, kind)
    groups = _survey(p)
    hits = {k: fs for k, fs in groups.items() if k and k[0] == kind}
    if len(hits) == 1:
        (_, files), = hits.items()
        if kind != "dit" and len(files) > 1:
            raise SchemaError(f"{p}: {len(files)} files each hold {KINDS[kind]} ({files[0].name}, {files[1].name}); "
                              f"pass one file")
        return _from_files(kind, files, cfg_json if kind == "dit" else None, p)
    raise NotFound(f"{p}: found {_found_text(p, groups)}; expected {KINDS[kind]}")
