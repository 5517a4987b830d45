"""Training utilities: :mod:`lus.train.loop` (generic resumable, DDP-ready epoch loop) and
:mod:`lus.train.distributed` (torchrun helpers)."""
