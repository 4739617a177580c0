"""BRIA RMBG-1.4: the IS-Net architecture in torch.

Written from the architecture description (IS-Net, Qin et al. 2022; U^2-Net's
residual U-blocks). Parameter names, shapes and dtypes are those of the
published checkpoint, so ``load_state_dict(..., strict=True)`` accepts
``model.safetensors`` / ``model.pth`` / ``pytorch_model.bin``; the test suite
checks that against the manifest in ``tests/data/rmbg14_state_dict.tsv``.

Layout of every block: ``REBNCONV`` = 3x3 conv (padding = dilation) + BN + ReLU;
pools are 2x2/2 max-pools with ``ceil_mode=True``; every upsampling is bilinear
to the exact size of the skip tensor (``align_corners=False``), so any H x W runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _upsample_like(src: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(src, size=ref.shape[2:], mode="bilinear", align_corners=False)


class REBNCONV(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU4..RSU7).

    Encoder: ``rebnconv1`` .. ``rebnconv{height-1}`` with a max-pool between
    them, then ``rebnconv{height}`` dilated by 2 at the bottom (no pool).
    Decoder: ``rebnconv{height-1}d`` .. ``rebnconv1d``, each on the
    concatenation (deeper, skip), upsampled to the skip's size.
    """

    def __init__(self, height: int, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.height = height
        self.rebnconvin = REBNCONV(in_ch, out_ch, 1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, 1)
        for i in range(2, height):
            setattr(self, f"rebnconv{i}", REBNCONV(mid_ch, mid_ch, 1))
        setattr(self, f"rebnconv{height}", REBNCONV(mid_ch, mid_ch, 2))
        for i in range(height - 1, 1, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid_ch * 2, mid_ch, 1))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, 1)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = [self.rebnconv1(hxin)]
        for i in range(2, self.height):
            skips.append(getattr(self, f"rebnconv{i}")(self.pool(skips[-1])))
        bottom = getattr(self, f"rebnconv{self.height}")(skips[-1])
        hx = getattr(self, f"rebnconv{self.height - 1}d")(torch.cat((bottom, skips[-1]), 1))
        for i in range(self.height - 2, 0, -1):
            skip = skips[i - 1]
            hx = getattr(self, f"rebnconv{i}d")(torch.cat((_upsample_like(hx, skip), skip), 1))
        return hx + hxin


class RSU4F(nn.Module):
    """Residual block without pooling: growing dilations 1, 2, 4, 8 instead."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int) -> None:
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, 1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, 1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, 2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, 4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, 8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, 4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, 2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        hx1d = self.rebnconv1d(torch.cat((hx2d, hx1), 1))
        return hx1d + hxin


class BriaRMBG(nn.Module):
    """IS-Net as published in RMBG-1.4.

    ``forward`` returns ``([sigmoid(d1) .. sigmoid(d6)], [hx1d .. hx6])`` like
    the original; every side map is upsampled to the input size first.
    Inference only needs d1: use :class:`RMBGMatte`.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 1) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, 64, 3, stride=2, padding=1)
        self.pool_in = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # unused, as published
        self.stage1 = RSU(7, 64, 32, 64)
        self.pool12 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.stage2 = RSU(6, 64, 32, 128)
        self.pool23 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.stage3 = RSU(5, 128, 64, 256)
        self.pool34 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.stage4 = RSU(4, 256, 128, 512)
        self.pool45 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.stage5 = RSU4F(512, 256, 512)
        self.pool56 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.stage6 = RSU4F(512, 256, 512)
        self.stage5d = RSU4F(1024, 256, 512)
        self.stage4d = RSU(4, 1024, 128, 256)
        self.stage3d = RSU(5, 512, 64, 128)
        self.stage2d = RSU(6, 256, 32, 64)
        self.stage1d = RSU(7, 128, 16, 64)
        self.side1 = nn.Conv2d(64, out_ch, 3, padding=1)
        self.side2 = nn.Conv2d(64, out_ch, 3, padding=1)
        self.side3 = nn.Conv2d(128, out_ch, 3, padding=1)
        self.side4 = nn.Conv2d(256, out_ch, 3, padding=1)
        self.side5 = nn.Conv2d(512, out_ch, 3, padding=1)
        self.side6 = nn.Conv2d(512, out_ch, 3, padding=1)

    def _decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hxin = self.conv_in(x)
        hx1 = self.stage1(hxin)
        hx2 = self.stage2(self.pool12(hx1))
        hx3 = self.stage3(self.pool23(hx2))
        hx4 = self.stage4(self.pool34(hx3))
        hx5 = self.stage5(self.pool45(hx4))
        hx6 = self.stage6(self.pool56(hx5))
        hx5d = self.stage5d(torch.cat((_upsample_like(hx6, hx5), hx5), 1))
        hx4d = self.stage4d(torch.cat((_upsample_like(hx5d, hx4), hx4), 1))
        hx3d = self.stage3d(torch.cat((_upsample_like(hx4d, hx3), hx3), 1))
        hx2d = self.stage2d(torch.cat((_upsample_like(hx3d, hx2), hx2), 1))
        hx1d = self.stage1d(torch.cat((_upsample_like(hx2d, hx1), hx1), 1))
        return hx1d, [hx1d, hx2d, hx3d, hx4d, hx5d, hx6]

    def forward(self, x: torch.Tensor):
        _, feats = self._decode(x)
        sides = (self.side1, self.side2, self.side3, self.side4, self.side5, self.side6)
        ds = [torch.sigmoid(_upsample_like(side(f), x)) for side, f in zip(sides, feats)]
        return ds, feats

    def matte(self, x: torch.Tensor) -> torch.Tensor:
        """d1 alone, sigmoid applied: [N,1,H,W] in [0,1]. Skips the unused heads."""
        hx1d, _ = self._decode(x)
        return torch.sigmoid(_upsample_like(self.side1(hx1d), x))


class RMBGMatte(nn.Module):
    """Export/inference wrapper: input ``[N,3,H,W]`` normalised, output d1 ``[N,1,H,W]``."""

    def __init__(self, net: BriaRMBG) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.matte(x)
