"""Plain ``nn.Module`` networks (no Lightning here): a new architecture is one file plus a config."""

from medlight.nets.abn import ABNOutput, AttentionBranchNetwork
from medlight.nets.classical import L1WaveletCS, SenseRecon
from medlight.nets.common import PadToMultiple
from medlight.nets.deeplab import DeepLabV3Plus
from medlight.nets.hrnet import HRNet
from medlight.nets.pspnet import PSPNet
from medlight.nets.segformer import SegFormer
from medlight.nets.unet import AttentionResUNet, EncoderDecoderUNet, ResUNet, UNet
from medlight.nets.varnet import VarNet, ZeroFilled

__all__ = [
    "ABNOutput",
    "AttentionBranchNetwork",
    "AttentionResUNet",
    "DeepLabV3Plus",
    "EncoderDecoderUNet",
    "HRNet",
    "L1WaveletCS",
    "PSPNet",
    "PadToMultiple",
    "ResUNet",
    "SegFormer",
    "SenseRecon",
    "UNet",
    "VarNet",
    "ZeroFilled",
]
