"""Draw predictions on source frames: frame score, Reg-STN crop boxes, CNN-LSTM diagnosis, segmentation.

Everything is drawn on the video as decoded (BGR, full resolution), with black header bands on top
that carry the text (frame score and its class bars; below it the video's CNN-LSTM diagnosis and its
class bars, with ``[read]`` on the frames the CNN-LSTM read), so no pixel of the ultrasound image is
hidden by labels. The model saw only the sector crop: crop maps (normalised to that crop) are drawn inside it with
:func:`lus.report.localization.draw_crop_boxes` (crop 1 blue, crop 2 green), and the crop itself is
outlined in grey. Segmentation labels (at the extraction size) are resized back onto the crop with
nearest neighbours and blended with :func:`lus.report.seg_overlays.overlay`'s class colours. Videos
narrower than 320 px are enlarged by an integer factor (nearest neighbour) so text and boxes stay legible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lus.data.extract import resize_nearest
from lus.data.sector import CropBox
from lus.report.localization import draw_crop_boxes
from lus.report.seg_overlays import CLASS_COLOURS, overlay

FONT = cv2.FONT_HERSHEY_SIMPLEX
CROP_OUTLINE = (160, 160, 160)  # BGR
# Score colours (BGR) = the segmentation colours of the score-0..3 regions, so both videos agree.
SCORE_COLOURS = [tuple(int(v) for v in (c[::-1] * 255).round()) for c in CLASS_COLOURS[1:]]
DIAGNOSIS_COLOURS = {"covid": (40, 40, 255), "pneumonia": (27, 133, 255), "healthy": (64, 204, 46)}  # BGR


def class_colours(classes: list[str]) -> list[tuple[int, int, int]]:
    """Bar colours of the CNN-LSTM classes: diagnoses by name, video scores like the frame scores."""
    return [DIAGNOSIS_COLOURS.get(c, SCORE_COLOURS[i % len(SCORE_COLOURS)]) for i, c in enumerate(classes)]


MIN_DISPLAY_WIDTH = 320


def display_scale(width: int) -> int:
    """Integer enlargement of a frame ``width`` px wide for display (1 from 320 px on)."""
    return 1 if width >= MIN_DISPLAY_WIDTH else math.ceil(MIN_DISPLAY_WIDTH / max(width, 1))


def _for_display(frame: np.ndarray, box: CropBox) -> tuple[np.ndarray, CropBox]:
    """A writable copy of ``frame`` at display size and ``box`` in its pixels."""
    s = display_scale(frame.shape[1])
    if s == 1:
        return np.ascontiguousarray(frame.copy()), box
    big = cv2.resize(frame, (frame.shape[1] * s, frame.shape[0] * s), interpolation=cv2.INTER_NEAREST)
    return big, CropBox(box.x0 * s, box.y0 * s, box.x1 * s, box.y1 * s)


def band_height(width: int) -> int:
    """Header band height for a frame ``width`` px wide (readable from 140 px GIFs to 1080p)."""
    return int(np.clip(round(0.09 * width), 18, 64))


def _put_text(band: np.ndarray, text: str, x: int, max_width: int, colour: tuple[int, int, int]) -> int:
    """Write ``text`` vertically centred in ``band``, shrunk to fit ``max_width``; return its right edge."""
    h = band.shape[0]
    (tw, th), _ = cv2.getTextSize(text, FONT, 1.0, 1)
    scale = min(0.55 * h / th, max(max_width, 1) / max(tw, 1))
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, thick)
    cv2.putText(band, text, (x, (h + th) // 2), FONT, scale, colour, thick, cv2.LINE_AA)
    return x + tw


def _band(width: int, text: str, colour: tuple[int, int, int], bars: np.ndarray | None = None,
          colours: list[tuple[int, int, int]] = SCORE_COLOURS) -> np.ndarray:
    """Black band with ``text`` and, right-aligned, one bar per class (height = value in [0, 1]) or legend squares."""
    h = band_height(width)
    band = np.zeros((h, width, 3), np.uint8)
    pad = max(2, h // 8)
    bar_w = max(3, h // 3)
    n = len(colours)
    bars_x0 = width - pad - n * (bar_w + pad)
    _put_text(band, text, pad, bars_x0 - 2 * pad, colour)
    values = np.ones(n) if bars is None else np.clip(np.asarray(bars, float), 0.0, 1.0)
    for c in range(n):
        x = bars_x0 + c * (bar_w + pad)
        top = (h - pad) - int(round(values[c] * (h - 2 * pad)))
        if bars is not None:
            cv2.rectangle(band, (x, pad), (x + bar_w - 1, h - pad - 1), (70, 70, 70), 1)
        cv2.rectangle(band, (x, top), (x + bar_w - 1, h - pad - 1), colours[c], -1)
    return band


@dataclass(frozen=True)
class DiagnosisView:
    """What the diagnosis band shows: the video's CNN-LSTM class probabilities and the frames it read."""

    classes: list[str]
    probs: np.ndarray
    frames_read: frozenset[int]

    def band(self, width: int, frame_no: int, with_number: bool) -> np.ndarray:
        best = int(np.argmax(self.probs))
        colours = class_colours(self.classes)
        text = (f"#{frame_no} " if with_number else "") + f"diagnosis {self.classes[best]} ({float(self.probs[best]):.2f})"
        if frame_no in self.frames_read:
            text += " [read]"
        return _band(width, text, colours[best], self.probs, colours)


def annotate_frame(frame: np.ndarray, box: CropBox, frame_no: int, theta1: np.ndarray | None = None,
                   theta2: np.ndarray | None = None, probs: np.ndarray | None = None,
                   diagnosis: DiagnosisView | None = None) -> np.ndarray:
    """BGR (bands + H, W, 3) at display size: the frame with the analysed crop, and what the package predicts.

    With frame-model outputs (``theta1``, ``theta2``, ``probs``): crop 1/2 boxes and a band with
    ``#frame score s (p)`` in the score's colour and the four class probabilities as bars (scores 0..3
    left to right). With ``diagnosis``: a band with the video's diagnosis and its class bars.
    """
    out, box = _for_display(frame, box)
    bands = []
    if probs is not None:
        region = box.apply(out)
        thickness = max(1, int(round(min(box.width, box.height) / 160)))
        boxed = draw_crop_boxes(cv2.cvtColor(region, cv2.COLOR_BGR2RGB), theta1, theta2, thickness=thickness)
        region[:] = cv2.cvtColor(boxed, cv2.COLOR_RGB2BGR)
        score = int(np.argmax(probs))
        bands.append(_band(out.shape[1], f"#{frame_no} score {score} ({float(probs[score]):.2f})",
                           SCORE_COLOURS[score], probs))
    cv2.rectangle(out, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), CROP_OUTLINE, 1)
    if diagnosis is not None:
        bands.append(diagnosis.band(out.shape[1], frame_no, with_number=probs is None))
    return np.vstack([*bands, out])


def overlay_segmentation(frame: np.ndarray, box: CropBox, labels: np.ndarray, frame_no: int) -> np.ndarray:
    """BGR (band + H, W, 3) at display size: the frame with the predicted region classes (uint8 (h, w),
    0 = none) on its crop. Colours: region of score 0 green, 1 yellow, 2 orange, 3 red (legend in the band).
    """
    out, box = _for_display(frame, box)
    region = box.apply(out)
    mask = resize_nearest(np.ascontiguousarray(labels), box.width, box.height)
    rgb = overlay(cv2.cvtColor(region, cv2.COLOR_BGR2GRAY), mask)
    region[:] = cv2.cvtColor((rgb * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
    cv2.rectangle(out, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), CROP_OUTLINE, 1)
    band = _band(out.shape[1], f"#{frame_no} regions, score 0-3:", (255, 255, 255))
    return np.vstack([band, out])
