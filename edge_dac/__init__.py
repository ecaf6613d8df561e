"""edge-dac: streaming audio captioning on edge devices with a diffusion captioner (DAC)."""

__version__ = "0.1.0"
