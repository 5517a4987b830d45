"""Published numbers the report puts beside ours (METHODS.md §5), as plain data.

Values are percentages as printed in the papers (or fractions for Barros et al., as printed).
"""

from __future__ import annotations

# Roy et al. 2020, Table 1: frame-level F1 (%) (most likely micro-F1 = accuracy).
TABLE1_COLUMNS = ("regular", "drop_k1", "drop_k3", "drop_k5", "drop_k7", "video_ann", "a3", "a4", "avg")
TABLE1_HEADERS = ("regular", "K=1", "K=3", "K=5", "K=7", "Video Ann.", "A=3", "A=4", "avg")
TABLE1 = {
    "CNN+CE": (61.6, 63.1, 64.9, 66.3, 67.6, 74.8, 78.0, 77.0, 69.2),
    "CNN+SORD": (63.2, 64.8, 66.3, 67.8, 68.9, 73.0, 76.8, 75.8, 69.6),
    "ResNet-18+SORD": (62.2, 63.9, 65.5, 66.9, 67.8, 74.5, 77.4, 76.4, 69.3),
    "CNN+STN+SORD": (61.0, 62.6, 63.8, 64.8, 65.6, 78.4, 82.2, 81.4, 70.0),
    "CNN+random crop+SORD": (61.8, 63.0, 64.2, 65.1, 65.9, 71.9, 74.6, 73.5, 67.5),
    "CNN+Reg-STN+SORD": (65.1, 66.7, 68.3, 69.5, 70.3, 75.4, 78.4, 77.5, 71.4),
}
# Which published row corresponds to each of our frame_model.arch (+ loss) settings.
TABLE1_ROW_OF_ARCH = {"reg_stn": "CNN+Reg-STN+SORD", "stn": "CNN+STN+SORD", "resnet18": "ResNet-18+SORD",
                      "cnn:ce": "CNN+CE", "cnn:sord": "CNN+SORD", "random_crop": "CNN+random crop+SORD"}

# Roy et al. 2020, Table 2: video level (%), mean ± std over 5 patient-wise folds: (F1, precision, recall).
TABLE2 = {
    "max_argmax": ((46, 21), (55, 27), (49, 18)),
    "argmax_mean": ((51, 12), (56, 19), (53, 9)),
    "uninorm": ((61, 12), (70, 19), (60, 7)),
}
TABLE2_METRICS = ("f1_weighted", "precision_weighted", "recall_weighted")  # the order of each TABLE2 entry
# Pooled weighted F1 (%) of the baselines over the 58 ICLUS videos (METHODS §2.9): a sanity check of the join.
POOLED_REFERENCE = {"argmax_mean": 53.2, "max_argmax": 46.9, "majority": 54.6}

# Roy et al. 2020 segmentation [uncertain, recalled, not verified]: ensemble Dice and pixel accuracy.
SEGMENTATION = {"ensemble_dice_bin": 0.75, "ensemble_pixel_acc": 0.96}

# Barros et al. 2021, Xception-20 (5 video-wise folds): accuracy mean (std) and per class.
BARROS_ACCURACY = (0.933, 0.133)
BARROS_PER_CLASS = {  # precision, recall, F1, specificity (means)
    "covid": (0.938, 0.969, 0.952, 0.957),
    "pneumonia": (0.917, 0.940, 0.927, 0.962),
    "healthy": (0.950, 0.892, 0.914, 0.983),
}

# COVID-BLUES (Wiedemann et al. 2025), 63 patients: patient-level COVID-19 detection accuracy.
COVID_BLUES_DETECTION = {"zero_shot": 0.65, "targeted_training": 0.79, "human_severity": 0.65}
