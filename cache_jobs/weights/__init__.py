"""Real Wan2.2 weights in every layout users have, found by content and converted exactly.

    tensors.py    lazy views of .safetensors / .pth files (names, shapes, one tensor at a time)
    vae.py        Wan2.2 VAE   release names -> diffusers AutoencoderKLWan names; architecture from shapes
    t5.py         Wan umT5     release names -> transformers UMT5EncoderModel names; architecture from shapes
    dit.py        Wan2.2 DiT   release names -> diffusers WanTransformer3DModel names; config.json mapping
    component.py  open_component(path, kind): detection, strict name/shape check, streaming load, digest
    resolve.py    --model/--vae/--text-encoder/--tokenizer -> component paths; tokenizer lookup
    convert.py    `wamdata convert`: any layout -> diffusers repo dir (atomic)
"""
