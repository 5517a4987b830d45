"""Data source ``synthetic``: render the built-in lung-ultrasound dataset and return its manifest.

Writes ``out_dir/videos/<video_id>.avi`` (MJPG) and ``out_dir/labels/<video_id>.npz`` (``labels``
int8 (T,), ``annotators`` int8 (A, T), ``masks`` uint8 (T, H, W), ``findings`` uint8 (T, F) flags of the
diagnosis-specific findings each frame shows, ``finding_names`` str (F,) their names, see
:data:`lus.synth.render.FINDINGS`); the returned rows follow
:data:`lus.data.manifest.MANIFEST_COLUMNS` with paths relative to ``out_dir``. Everything is
deterministic from ``seed`` (same seed -> byte-identical files).
"""

from __future__ import annotations

import io
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lus.config.synthetic import SyntheticSection
from lus.data.manifest import MANIFEST_COLUMNS
from lus.synth.dataset import VideoSpec, iter_specs
from lus.synth.plan import FindingParams
from lus.synth.render import FINDINGS
from lus.synth.video import render_video, write_avi


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Compressed .npz readable by ``np.load``, byte-identical across runs.

    ``np.savez_compressed`` stamps each zip member with the current time, so two runs differ;
    here every member gets a fixed timestamp. (The caller's out_dir is already a temporary
    directory, so no extra atomic rename is needed.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=6)


def render_one(spec: VideoSpec, cfg: SyntheticSection, out_dir: Path) -> dict:
    """Render and write one video and its annotations; return its manifest row."""
    vid = render_video(
        spec.rng(), spec.style, spec.diagnosis, spec.probe, spec.n_frames, spec.fps, cfg.height, cfg.width,
        n_annotators=cfg.n_annotators, annotator_noise=cfg.annotator_noise,
        max_transitions=cfg.max_transitions, findings=FindingParams.from_section(cfg), burned_text=cfg.burned_text,
        score_rule=cfg.video_score_rule, score_share=cfg.video_score_share,
        score_noise=cfg.video_score_noise, point=spec.point,
    )
    video_rel = f"videos/{spec.video_id}.avi"
    label_rel = f"labels/{spec.video_id}.npz"
    write_avi(out_dir / video_rel, vid.frames, spec.fps)
    _write_npz(out_dir / label_rel, labels=vid.labels, annotators=vid.annotators, masks=vid.masks,
               findings=vid.findings, finding_names=np.array(FINDINGS))
    return {
        "video_id": spec.video_id, "path": video_rel, "patient_id": spec.patient_id,
        "hospital": spec.hospital, "probe": spec.probe, "fps": float(spec.fps),
        "n_frames": int(spec.n_frames), "video_score": int(vid.score), "diagnosis": spec.diagnosis,
        "covid_positive": int(spec.diagnosis == "covid"), "frame_labels": label_rel, "masks": label_rel,
    }


def generate(cfg: SyntheticSection, seed: int, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Render the dataset described by ``cfg`` into ``out_dir``; return one manifest row per video.

    Videos are rendered in ``cfg.workers`` processes; each video draws from its own random stream
    (see :mod:`lus.synth.dataset`), so the bytes do not depend on the number of workers.
    """
    out_dir = Path(out_dir)
    specs = list(iter_specs(cfg, seed))
    workers = max(1, min(cfg.workers, len(specs), os.cpu_count() or 1))
    bar = tqdm(total=len(specs), desc="synthetic videos", unit="video", disable=not progress)
    try:
        if workers == 1:
            rows = []
            for spec in specs:
                rows.append(render_one(spec, cfg, out_dir))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(render_one, spec, cfg, out_dir) for spec in specs]
                for fut in futures:
                    fut.add_done_callback(lambda _: bar.update(1))
                rows = [fut.result() for fut in futures]
    finally:
        bar.close()
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
