"""The world action model: MoT + proprio token + flow-matching losses and samplers for the four variants.

    batch  latents [B,48,F,h,w] (frame 0 clean), actions [B,T,A], state [B,S], action_is_pad [B,T],
           frame_is_pad [B,9], context [B,L,text_dim] (umT5)
    train  fastwam/joint: [first | noisy future | noisy actions]; idm adds [cond = GT future, noised with
           p]; novideo: [first | noisy actions]; L = l_act*L_act + l_vid*L_vid (pads masked, Gaussian weight)
    infer  fastwam/novideo: prefill first-frame K/V once, N Euler steps on the action expert only;
           joint: N joint Euler steps over video + actions; idm: N video steps, then N action steps
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastwam_train.config import ModelConfig, ObjectiveConfig
from fastwam_train.flow import FlowSchedule
from fastwam_train.masks import build_mask
from fastwam_train.model import MoT, init_action_from_video, load_wan_weights


def _cat_inputs(a: dict, b: dict) -> dict:
    """Append the tokens of b to a (video stream made of several groups)."""
    return {"x": torch.cat([a["x"], b["x"]], 1), "tproj": torch.cat([a["tproj"], b["tproj"]], 1),
            "rope": tuple(torch.cat([p, q], 1) for p, q in zip(a["rope"], b["rope"], strict=True)),
            "temb": a["temb"], "ctx": a["ctx"]}


def _drop_first(e: dict, n: int) -> dict:
    return {"x": e["x"][:, n:], "tproj": e["tproj"][:, n:], "rope": tuple(r[:, n:] for r in e["rope"])}


class WAM(nn.Module):
    def __init__(self, cfg: ModelConfig, objective: ObjectiveConfig):
        super().__init__()
        if cfg.action_dim <= 0:
            raise ValueError(f"action_dim must be positive, got {cfg.action_dim}")
        self.cfg, self.objective = cfg, objective
        self.variant = cfg.variant
        self.mot = MoT(cfg)
        self.proprio_encoder = nn.Linear(cfg.state_dim, cfg.text_dim) if cfg.state_dim > 0 else None
        self.flow = FlowSchedule(objective)

    @classmethod
    def build(cls, cfg: ModelConfig, objective: ObjectiveConfig) -> WAM:
        m = cls(cfg, objective)
        if cfg.wan_dir:
            load_wan_weights(m.mot.video, cfg.wan_dir)
        if cfg.action_backbone:
            from fastwam_train.official import load_action_backbone
            load_action_backbone(m.mot.action, cfg.action_backbone, cfg)
        elif cfg.action_init != "random":
            init_action_from_video(m.mot.action, m.mot.video, alpha=cfg.action_init == "interpolate")
        if cfg.init_checkpoint:
            from fastwam_train.official import load_official
            load_official(m, cfg.init_checkpoint)
        return m

    # -- inputs -----------------------------------------------------------------------------------------
    def context(self, batch: dict) -> torch.Tensor:
        ctx = batch["context"]
        if self.proprio_encoder is None:
            return ctx
        tok = self.proprio_encoder(batch["state"].to(ctx.dtype)).unsqueeze(1).to(ctx.dtype)
        return torch.cat([ctx, tok], 1)

    def _tpf(self, lat: torch.Tensor) -> int:
        return self.mot.video.tokens_per_frame(lat.shape[-2], lat.shape[-1])

    def draw(self, batch: dict, generator: torch.Generator | None = None, rank: int = 0, world: int = 1) -> dict:
        """All randomness of one training step (noises, sigmas, idm noise-augmentation flags), on CPU.

        Drawn for the global batch (this rank's batch x world, the same generator state on every rank) and
        sliced to rows rank::world, the rows of this rank's samples in the global batch (data.py), so a step
        draws the same numbers for each sample whatever the number of processes."""
        lat, act = batch["latents"], batch["actions"]
        b = lat.shape[0] * world
        fut_shape = (b, lat.shape[1], lat.shape[2] - 1, *lat.shape[3:])
        out = {
            "noise_video": torch.randn(fut_shape, generator=generator),
            "noise_action": torch.randn((b, *act.shape[1:]), generator=generator),
            "sigma_video": self.flow.sample_sigma(b, generator),
            "sigma_action": self.flow.sample_sigma(b, generator),
            "noise_cond": torch.randn(fut_shape, generator=generator),
            "sigma_cond": self.flow.sample_sigma(b, generator),
            "cond_noisy": torch.rand(b, generator=generator) < self.objective.idm_cond_noise_prob,
        }
        return out if world == 1 else {k: v[rank::world].contiguous() for k, v in out.items()}

    # -- training ---------------------------------------------------------------------------------------
    def forward_train(self, batch: dict, rnd: dict) -> dict:
        lat, act = batch["latents"], batch["actions"]
        dev, dt = lat.device, lat.dtype
        rnd = {k: v.to(dev) for k, v in rnd.items()}
        b, _, f, h, w = lat.shape
        first, fut = lat[:, :, :1], lat[:, :, 1:]
        ctx = self.context(batch)
        tpf, nf = self._tpf(lat), self._tpf(lat) * (f - 1)
        sizes = {"first": tpf, "action": act.shape[1]}
        zeros = torch.zeros(b, 1, device=dev, dtype=dt)
        if self.variant == "novideo":
            v_in = self.mot.video.embed(first, zeros, ctx)
        else:
            noisy = self.flow.add_noise(fut, rnd["noise_video"].to(dt), rnd["sigma_video"])
            tf = torch.cat([zeros, (rnd["sigma_video"] * self.flow.n).to(dt)[:, None].expand(b, f - 1)], 1)
            v_in = self.mot.video.embed(torch.cat([first, noisy], 2), tf, ctx)
            sizes["future"] = nf
        if self.variant == "idm":
            sig = torch.where(rnd["cond_noisy"], rnd["sigma_cond"], torch.zeros_like(rnd["sigma_cond"]))
            cond = self.flow.add_noise(fut, rnd["noise_cond"].to(dt), sig)
            tc = torch.cat([zeros, (sig * self.flow.n).to(dt)[:, None].expand(b, f - 1)], 1)
            c_in = self.mot.video.embed(torch.cat([first, cond], 2), tc, ctx)
            v_in = _cat_inputs(v_in, _drop_first(c_in, tpf))
            sizes["cond"] = nf
        noisy_a = self.flow.add_noise(act, rnd["noise_action"].to(dt), rnd["sigma_action"])
        a_in = self.mot.action.embed(noisy_a, (rnd["sigma_action"] * self.flow.n).to(dt), ctx)
        mask = build_mask(self.variant, sizes, dev)
        xv, xa, _ = self.mot(v_in, a_in, mask)
        out = {"pred_action": self.mot.action.head(xa),
               "target_action": self.flow.target(act, rnd["noise_action"].to(dt))}
        if self.variant != "novideo":
            sl = slice(tpf, tpf + nf)
            out["pred_video"] = self.mot.video.head(xv[:, sl], v_in["temb"][:, sl], (f - 1, h, w))
            out["target_video"] = self.flow.target(fut, rnd["noise_video"].to(dt))
        return out

    def forward(self, batch: dict, rnd: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.loss(batch, rnd)

    def loss(self, batch: dict, rnd: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.forward_train(batch, rnd)
        dev = out["pred_action"].device
        tok = F.mse_loss(out["pred_action"].float(), out["target_action"].float(), reduction="none").mean(-1)
        valid = (~batch["action_is_pad"]).float()
        per = (tok * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        l_act = (per * self.flow.weight(rnd["sigma_action"]).to(dev)).mean()
        terms = {"loss_action": l_act}
        total = self.objective.lambda_action * l_act
        if "pred_video" in out:
            vt = F.mse_loss(out["pred_video"].float(), out["target_video"].float(), reduction="none")
            vt = vt.mean(dim=(1, 3, 4))                                   # [B, F-1]
            fpad = batch["frame_is_pad"][:, 1:]
            lat_pad = fpad.reshape(fpad.shape[0], vt.shape[1], -1).all(-1)  # latent frame = 4 raw frames
            valid = (~lat_pad).float()
            per = (vt * valid).sum(1) / valid.sum(1).clamp(min=1.0)
            l_vid = (per * self.flow.weight(rnd["sigma_video"]).to(dev)).mean()
            terms["loss_video"] = l_vid
            total = total + self.objective.lambda_video * l_vid
        terms["loss"] = total
        return total, terms

    # -- inference --------------------------------------------------------------------------------------
    def _prefill(self, v_in: dict, sizes: dict) -> list:
        _, _, cache = self.mot(v_in, None, build_mask(self.variant, sizes, v_in["x"].device), collect_kv=True)
        return cache

    def _action_steps(self, x_a, ctx, cache, sizes, sigmas):
        b, dev = x_a.shape[0], x_a.device
        full = dict(sizes, action=x_a.shape[1])
        n_ctx = sum(sizes.values())
        mask = build_mask(self.variant, full, dev)[n_ctx:]
        for s0, s1 in zip(sigmas[:-1], sigmas[1:], strict=True):
            t = torch.full((b,), float(s0) * self.flow.n, device=dev, dtype=x_a.dtype)
            a_in = self.mot.action.embed(x_a, t, ctx)
            _, xa, _ = self.mot(None, a_in, mask, cache=cache)
            x_a = x_a + (float(s1) - float(s0)) * self.mot.action.head(xa)
        return x_a

    @torch.no_grad()
    def sample_actions(self, batch: dict, generator: torch.Generator | None = None,
                       num_future_frames: int | None = None) -> torch.Tensor:
        """Normalized action chunk [B, T, A] from the first latent frame, text and state."""
        first = batch["latents"][:, :, :1]
        dev, dt = first.device, first.dtype
        b, c, _, h, w = first.shape
        ctx = self.context(batch)
        tpf = self._tpf(first)
        sig = self.flow.inference_sigmas()
        shape_a = (b, self.cfg.action_horizon, self.cfg.action_dim)
        x_a = torch.randn(shape_a, generator=generator).to(dev, dt)
        zeros = torch.zeros(b, 1, device=dev, dtype=dt)
        if self.variant in ("fastwam", "novideo"):
            cache = self._prefill(self.mot.video.embed(first, zeros, ctx), {"first": tpf})
            return self._action_steps(x_a, ctx, cache, {"first": tpf}, sig)
        nfut = num_future_frames or batch["latents"].shape[2] - 1
        x_v = torch.randn((b, c, nfut, h, w), generator=generator).to(dev, dt)
        sizes = {"first": tpf, "future": tpf * nfut}
        for s0, s1 in zip(sig[:-1], sig[1:], strict=True):
            tf = torch.cat([zeros, torch.full((b, nfut), float(s0) * self.flow.n, device=dev, dtype=dt)], 1)
            v_in = self.mot.video.embed(torch.cat([first, x_v], 2), tf, ctx)
            if self.variant == "joint":
                t_a = torch.full((b,), float(s0) * self.flow.n, device=dev, dtype=dt)
                a_in = self.mot.action.embed(x_a, t_a, ctx)
                xv, xa, _ = self.mot(v_in, a_in, build_mask("joint", dict(sizes, action=shape_a[1]), dev))
                x_a = x_a + (float(s1) - float(s0)) * self.mot.action.head(xa)
            else:
                xv, _, _ = self.mot(v_in, None, build_mask("idm", sizes, dev))
            pred_v = self.mot.video.head(xv[:, tpf:], v_in["temb"][:, tpf:], (nfut, h, w))
            x_v = x_v + (float(s1) - float(s0)) * pred_v
        if self.variant == "joint":
            return x_a
        tf = torch.zeros(b, 1 + nfut, device=dev, dtype=dt)
        ctx_sizes = {"first": tpf, "cond": tpf * nfut}
        cache = self._prefill(self.mot.video.embed(torch.cat([first, x_v], 2), tf, ctx), ctx_sizes)
        return self._action_steps(x_a, ctx, cache, ctx_sizes, sig)
