"""lus: reproducible lung-ultrasound deep learning (Roy et al. 2020, Barros et al. 2021)."""

__version__ = "0.1.0"
