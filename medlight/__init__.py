"""medlight: a PyTorch Lightning experiment framework for medical imaging research."""

__version__ = "0.1.0"
