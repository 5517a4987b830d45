"""Label sets shared by every layer (one home; METHODS §1.1, DATA.md).

Severity is the Soldati score 0..3 (frame and video level); the frame model's softmax columns are
``p0..p3`` in that order. Diagnoses have a fixed order (covid, pneumonia, healthy). Segmentation
masks use 5 classes: 0 background/unannotated, 1..4 = region of score 0..3.
"""

from __future__ import annotations

SCORES = (0, 1, 2, 3)                                   # Soldati severity scores
N_SCORES = len(SCORES)                                  # classes of the frame model and the aggregator
PROB_COLUMNS = tuple(f"p{c}" for c in SCORES)           # frame softmax columns in frames.parquet
DIAGNOSES = ("covid", "pneumonia", "healthy")           # CNN-LSTM / manifest diagnosis order
SCORE_CLASSES = tuple(f"score{c}" for c in SCORES)     # class names of a CNN-LSTM video-score target
N_SEG_CLASSES = 5                                       # segmentation mask classes 0..4
