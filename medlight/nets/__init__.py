"""Plain ``nn.Module`` networks (no Lightning here): a new architecture is one file plus a config."""

from medlight.nets.abn import ABNOutput, AttentionBranchNetwork
from medlight.nets.unet import AttentionResUNet, EncoderDecoderUNet, ResUNet, UNet
from medlight.nets.varnet import VarNet, ZeroFilled

__all__ = [
    "ABNOutput",
    "AttentionBranchNetwork",
    "AttentionResUNet",
    "EncoderDecoderUNet",
    "ResUNet",
    "UNet",
    "VarNet",
    "ZeroFilled",
]
