"""Do a backbone's cached CNN-LSTM features carry the diagnosis? A linear classifier on them, as a yardstick.

Usage (from the project root, after `dvc repro` has trained the CNN-LSTM folds, so `.cache/features` holds
the sampled frames' features)::

    python scripts/diagnosis_feature_probe.py                      # each fold's own backbone (models/cnn_lstm/fold_K)
    python scripts/diagnosis_feature_probe.py --cache-dir DIR      # one backbone for every fold (e.g. ImageNet
                                                                   # features cached by a mobilenet_v2 run)

Per video, the features of the ``cnn_lstm.seq_len`` sampled frames (N, D) are summarised as [mean, std,
mean |frame-to-frame change|] (3D,); a standardised logistic regression is trained on each fold's training
patients, its regularisation C is chosen on the fold's validation patients, and it is scored once on the
test patients. Prints accuracy per fold and the mean, comparable with `cnn_lstm.accuracy_mean`: if this
does well and the CNN-LSTM does not, its head is the limit; if both fail, the features are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lus.data.folds import load_folds  # noqa: E402
from lus.data.manifest import DIAGNOSES, read_manifest  # noqa: E402
from lus.io import read_json  # noqa: E402

C_GRID = (0.01, 0.1, 1.0, 10.0)


def video_summary(path: Path) -> np.ndarray:
    """[mean, std, mean |diff|] over time of a cached (N, D) feature file, float64 (3D,)."""
    with np.load(path, allow_pickle=False) as z:
        f = z["features"].astype(np.float64)
    return np.concatenate([f.mean(0), f.std(0), np.abs(np.diff(f, axis=0)).mean(0)])


def load_summaries(cache_dir: Path, video_ids: list[str], n: int) -> np.ndarray:
    missing = [v for v in video_ids if not (cache_dir / f"{v}.n{n}.npz").is_file()]
    if missing:
        raise SystemExit(f"{cache_dir}: no cached features for {len(missing)} videos (e.g. {missing[0]}.n{n}.npz); "
                         "run the CNN-LSTM stage with this backbone first")
    return np.stack([video_summary(cache_dir / f"{v}.n{n}.npz") for v in video_ids])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="data/raw/manifest.csv")
    ap.add_argument("--folds", default="data/splits/folds.json")
    ap.add_argument("--models", default="models/cnn_lstm", help="CNN-LSTM fold folders (meta.json: backbone_key)")
    ap.add_argument("--cache", default=".cache/features")
    ap.add_argument("--cache-dir", default="", help="one feature folder for every fold instead of the folds' own")
    ap.add_argument("--seq-len", type=int, default=20)
    args = ap.parse_args()

    manifest = read_manifest(args.manifest)
    if manifest["diagnosis"].isna().any():
        raise SystemExit(f"{args.manifest}: every video needs a diagnosis for this probe")
    label = manifest["diagnosis"].map({d: i for i, d in enumerate(DIAGNOSES)}).to_numpy()
    accs = []
    for k, fold in enumerate(load_folds(args.folds)):
        cache = Path(args.cache_dir) if args.cache_dir else \
            Path(args.cache) / read_json(Path(args.models) / f"fold_{k}" / "meta.json")["backbone_key"]
        part = manifest["patient_id"].astype(str).map({str(p): q for q in ("train", "val", "test") for p in fold[q]})
        idx = {q: np.flatnonzero(part.to_numpy() == q) for q in ("train", "val", "test")}
        x = load_summaries(cache, manifest["video_id"].astype(str).tolist(), args.seq_len)
        scaler = StandardScaler().fit(x[idx["train"]])
        best_val, best_model, best_c = -1.0, None, 0.0
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[idx["train"]]), label[idx["train"]])
            val = float(np.mean(model.predict(scaler.transform(x[idx["val"]])) == label[idx["val"]]))
            if val > best_val:
                best_val, best_model, best_c = val, model, c
        accs.append(float(np.mean(best_model.predict(scaler.transform(x[idx["test"]])) == label[idx["test"]])))
        print(f"fold {k}: {cache.name}, C {best_c} (val {best_val:.3f}), test {accs[-1]:.3f}", flush=True)
    print(f"linear diagnosis probe on cached features: accuracy {np.mean(accs):.3f} ± {np.std(accs):.3f} "
          f"over {len(accs)} folds")


if __name__ == "__main__":
    main()
