"""Exported model package (``models/export/``): written by the export stage, read by ``lus predict``.

``bundle`` holds the on-disk format and its loader, ``package`` builds it from a pipeline run and
``model_card`` fills MODEL_CARD.md from the package's manifest.
"""
