"""Batched augmentations on tensors, reusable for classification (image only) and segmentation (image + mask).

Images are float tensors (B, C, H, W) in [0, 1]; masks are integer tensors (B, H, W) (class ids, 0 =
background). Geometric augmentations build one affine map per sample in normalised coordinates
(``grid_sample`` convention, ``align_corners=False``: output point u in [-1, 1]^2 samples the input at
A u + t) and compose them into a single warp, so crop + flip + rotation cost one ``grid_sample``; the
image is sampled bilinearly with zero padding, the mask with nearest neighbour (padding -> 0).

Randomness comes from ``generator`` when given, else torch's global RNG (which the training loop
checkpoints, so resumed runs draw the same augmentations).

The frame model's train transform (METHODS §1.1), :func:`frame_train_augment`: RandomResizedCrop
(area [0.9, 1], aspect [0.9, 1.111]) -> hflip p=0.5 -> rotation ±23° with p=0.8 -> colour jitter with
p=0.8 (brightness 0.3, contrast 0.3). Saturation and hue jitter are omitted: they are exact no-ops on
grey frames replicated to RGB (a grey pixel has zero saturation), so skipping them changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F


def _rand(b: int, lo: float, hi: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(b, generator=generator, dtype=torch.float32).to(device=like.device, dtype=like.dtype)
    return lo + (hi - lo) * u


def _coin(b: int, p: float, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return _rand(b, 0.0, 1.0, like, generator) < p


def _eye(b: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device).expand(b, 3, 3).clone()


def crop_matrix(b: int, like: torch.Tensor, scale: tuple[float, float] = (0.9, 1.0),
                ratio: tuple[float, float] = (0.9, 1.111), generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomResizedCrop as (B, 3, 3) homogeneous maps; area share in ``scale``, log-uniform aspect in ``ratio``.

    Cheap version of torchvision's rejection sampling: width/height shares are clamped to <= 1 and the
    centre is uniform over the positions that keep the crop inside the image.
    """
    area = _rand(b, scale[0], scale[1], like, generator)
    log_r = _rand(b, math.log(ratio[0]), math.log(ratio[1]), like, generator)
    r = torch.exp(log_r)
    sw = torch.sqrt(area * r).clamp(max=1.0)   # crop width / image width
    sh = torch.sqrt(area / r).clamp(max=1.0)
    cx = _rand(b, -1.0, 1.0, like, generator) * (1 - sw)
    cy = _rand(b, -1.0, 1.0, like, generator) * (1 - sh)
    m = _eye(b, like)
    m[:, 0, 0], m[:, 1, 1], m[:, 0, 2], m[:, 1, 2] = sw, sh, cx, cy
    return m


def flip_matrix(b: int, like: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    m = _eye(b, like)
    m[:, 0, 0] = torch.where(_coin(b, p, like, generator), -1.0, 1.0).to(like.dtype)
    return m


def rotation_matrix(b: int, like: torch.Tensor, degrees: float, size: tuple[int, int], p: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotation by U(-degrees, degrees) about the centre with probability p, exact for non-square H x W."""
    ang = _rand(b, -degrees, degrees, like, generator) * math.pi / 180.0
    ang = torch.where(_coin(b, p, like, generator), ang, torch.zeros_like(ang))
    h, w = size
    c, s = torch.cos(ang), torch.sin(ang)
    m = _eye(b, like)
    # normalised -> pixel offsets (x * W/2, y * H/2), rotate, back
    m[:, 0, 0], m[:, 0, 1] = c, -s * h / w
    m[:, 1, 0], m[:, 1, 1] = s * w / h, c
    return m


def affine_matrix(b: int, like: torch.Tensor, size: tuple[int, int], translate: float = 0.0, degrees: float = 0.0,
                  shear: float = 0.0, scale: tuple[float, float] = (1.0, 1.0), p: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random affine (segmentation-style): translate share of the size, rotate/shear in degrees, zoom range.

    A zoom factor z > 1 enlarges the content (samples a smaller input region). Applied with probability p.
    """
    h, w = size
    apply = _coin(b, p, like, generator)
    zoom = _rand(b, scale[0], scale[1], like, generator)
    sh = _rand(b, -shear, shear, like, generator) * math.pi / 180.0
    m = rotation_matrix(b, like, degrees, size, 1.0, generator)
    shear_m = _eye(b, like)
    shear_m[:, 0, 1] = torch.tan(sh) * h / w
    zoom_m = _eye(b, like)
    zoom_m[:, 0, 0] = zoom_m[:, 1, 1] = 1.0 / zoom
    shift = _eye(b, like)
    shift[:, 0, 2] = _rand(b, -translate, translate, like, generator) * 2
    shift[:, 1, 2] = _rand(b, -translate, translate, like, generator) * 2
    out = shift @ m @ shear_m @ zoom_m
    return torch.where(apply.view(b, 1, 1), out, _eye(b, like))


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, 1, height, width], align_corners=False)`` without gradients, computed as
    ``u * a + v * b + t`` by broadcasting instead of a batched matrix product over every pixel: 1.6x faster
    on CPU for a 64-frame batch, and equal to affine_grid bit for bit on the project's machines (the product
    has three terms, summed in the same order; tests/test_frame_models.py compares them)."""
    base = F.affine_grid(torch.eye(2, 3, dtype=theta.dtype, device=theta.device)[None], [1, 1, height, width],
                         align_corners=False)   # (1, H, W, 2): the identity grid's (u, v)
    u, v = base[..., 0], base[..., 1]
    a = theta.reshape(-1, 2, 3, 1, 1)
    return torch.stack([u * a[:, 0, 0] + v * a[:, 0, 1] + a[:, 0, 2],
                        u * a[:, 1, 0] + v * a[:, 1, 1] + a[:, 1, 2]], dim=-1)


def warp(image: torch.Tensor, matrix: torch.Tensor, out_size: tuple[int, int] | None = None,
         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resample ``image`` (and ``mask``) through (B, 3, 3) or (B, 2, 3) maps to ``out_size`` (default: same).

    Augmentation only: no gradient flows to ``matrix`` (see :func:`sampling_grid`)."""
    b, c, h, w = image.shape
    oh, ow = out_size or (h, w)
    theta = matrix[:, :2, :].to(image.dtype)
    grid = sampling_grid(theta, oh, ow)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_mask = None
    if mask is not None:
        m = F.grid_sample(mask.unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        out_mask = m.squeeze(1).round().to(mask.dtype)
    return out, out_mask


def brightness_contrast(image: torch.Tensor, brightness: float = 0.3, contrast: float = 0.3, p: float = 0.8,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision-style jitter: x * b, then (x - mean) * c + mean (mean per image), clamped to [0, 1]."""
    b = image.shape[0]
    apply = _coin(b, p, image, generator).view(b, 1, 1, 1)
    fb = _rand(b, 1 - brightness, 1 + brightness, image, generator).view(b, 1, 1, 1)
    fc = _rand(b, 1 - contrast, 1 + contrast, image, generator).view(b, 1, 1, 1)
    out = (image * fb).clamp(0, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * fc + mean).clamp(0, 1)
    return torch.where(apply, out, image)


def multiply(image: torch.Tensor, lo: float = 0.55, hi: float = 1.45, p: float = 0.33,
             generator: torch.Generator | None = None) -> torch.Tensor:
    b = image.shape[0]
    f = torch.where(_coin(b, p, image, generator), _rand(b, lo, hi, image, generator), torch.ones(b, dtype=image.dtype,
                                                                                               device=image.device))
    return (image * f.view(b, 1, 1, 1)).clamp(0, 1)


def gaussian_noise(image: torch.Tensor, std: float = 0.015, p: float = 0.33,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    b = image.shape[0]
    noise = torch.randn(image.shape, generator=generator, dtype=torch.float32).to(image)
    apply = _coin(b, p, image, generator).view(b, 1, 1, 1)
    return torch.where(apply, (image + std * noise).clamp(0, 1), image)


def gaussian_blur(image: torch.Tensor, max_sigma: float = 0.75, p: float = 0.33,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Separable blur with a per-sample sigma ~ U(0, max_sigma) (5-tap kernel)."""
    b, c, h, w = image.shape
    sigma = _rand(b, 1e-3, max_sigma, image, generator).clamp(min=1e-3)
    x = torch.arange(-2, 3, dtype=image.dtype, device=image.device)
    k = torch.exp(-(x.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)                       # (B, 5)
    kk = k.repeat_interleave(c, dim=0)                       # (B*C, 5)
    flat = image.reshape(1, b * c, h, w)
    out = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), kk.view(b * c, 1, 1, 5), groups=b * c)
    out = F.conv2d(F.pad(out, (0, 0, 2, 2), mode="replicate"), kk.view(b * c, 1, 5, 1), groups=b * c)
    apply = _coin(b, p, image, generator).view(b, 1, 1, 1)
    return torch.where(apply, out.view(b, c, h, w), image)


@dataclass(frozen=True)
class FrameAugment:
    """Settings of :func:`frame_train_augment` (paper values by default)."""

    crop_scale: tuple[float, float] = (0.9, 1.0)
    crop_ratio: tuple[float, float] = (0.9, 1.111)
    hflip: float = 0.5
    rotation: float = 23.0
    rotation_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    jitter_p: float = 0.8


def frame_train_augment(image: torch.Tensor, cfg: FrameAugment = FrameAugment(), mask: torch.Tensor | None = None,
                        out_size: tuple[int, int] | None = None,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """METHODS §1.1 train transform on a batch (crop -> flip -> rotate as one warp, then jitter)."""
    b, _, h, w = image.shape
    size = out_size or (h, w)
    m = crop_matrix(b, image, cfg.crop_scale, cfg.crop_ratio, generator)
    m = m @ flip_matrix(b, image, cfg.hflip, generator)
    m = m @ rotation_matrix(b, image, cfg.rotation, size, cfg.rotation_p, generator)
    out, out_mask = warp(image, m, size, mask)
    out = brightness_contrast(out, cfg.brightness, cfg.contrast, cfg.jitter_p, generator)
    return out, out_mask
