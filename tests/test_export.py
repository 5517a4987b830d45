"""Export stage: package layout, manifest, model card, determinism and failure modes, on a fabricated run
(random-weight models written in the pipeline's own layout: no training, a few seconds)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lus.config.base import load_section
from lus.config.extract import ExtractSection
from lus.config.frame_model import FrameModelSection
from lus.config.segmentation import SegmentationSection
from lus.data.manifest import MANIFEST_COLUMNS
from lus.export.bundle import FORMAT, load_bundle
from lus.export.package import export_models
from lus.models.frame_models import build_frame_model
from lus.models.frame_models import model_spec
from tests.conftest import PROJECT_ROOT

FOLDS = [0, 1]
NEUTRAL = {0: [0.1, 0.2, 0.3, 0.4], 1: [0.3, 0.2, 0.1, 0.0]}
METRICS = {
    "frame": {"frame": {"reg_stn": {"accuracy": 0.8123, "f1_macro": 0.7, "f1_weighted": 0.75}}},
    "video": {"video": {"n_folds": 2, "uninorm": {"f1_weighted_mean": 0.6543, "f1_weighted_std": 0.1,
                                                  "f1_weighted_pooled": 0.66, "accuracy_mean": 0.7,
                                                  "accuracy_std": 0.05}}},
    "segmentation": {"segmentation": {"applicable": 1.0, "ensemble": {"n_folds": 1, "dice_bin_mean": 0.9,
                                                                      "dice_bin_std": 0.0}}},
}


def fake_run(root: Path, frame_applicable: bool = True, with_segmentation: bool = True) -> dict[str, Path]:
    """Pipeline outputs the export stage reads, with random weights; returns the paths to pass.

    The frame models use the project's own params.yaml settings, so a new construction setting there
    (e.g. ``loc_input_size``) must survive the export."""
    sec = load_section(FrameModelSection, PROJECT_ROOT / "params.yaml")
    for k in FOLDS:
        folder = root / f"models/frame/fold_{k}"
        folder.mkdir(parents=True)
        if frame_applicable:
            torch.manual_seed(k)
            torch.save(build_frame_model(model_spec(sec)).state_dict(), folder / "model.pt")
            meta = {"applicable": 1, "params": sec.to_dict(), "selected_epoch": 3 + k, "label_source": "frame labels",
                    "provenance": {"torch": torch.__version__}}
        else:
            torch.save({}, folder / "model.pt")
            meta = {"applicable": 0, "reason": "no severity labels", "params": sec.to_dict()}
        (folder / "meta.json").write_text(json.dumps(meta))
        agg = {"fold": k, "applicable": 1, "neutral": NEUTRAL[k], "tnorm": "product", "off_diagonal": "min",
               "params": {"aggregator": {"epochs": 30, "lr": 0.01, "use_sord": True, "init_neutral": 0.0}}}
        (root / "models/aggregator").mkdir(parents=True, exist_ok=True)
        (root / f"models/aggregator/fold_{k}.json").write_text(json.dumps(agg))
    seg = SegmentationSection()
    for arch in ("unet", "deeplabv3plus"):
        folder = root / "models/segmentation" / arch
        (folder / "fold_0").mkdir(parents=True)
        if with_segmentation and arch == "unet":
            from lus.models.segmentation import build_segmentation_model

            net = build_segmentation_model(arch, seg.encoder, seg.encoder_depth, seg.decoder_channels, "none",
                                           seg.aspp_rates, seg.aspp_dropout)
            torch.save(net.state_dict(), folder / "fold_0/model.pt")
            meta = {"arch": arch, "applicable": 1, "folds": [0], "params": seg.to_dict()}
        else:
            meta = {"arch": arch, "applicable": 0, "reason": "no video of this data source has masks", "folds": []}
        (folder / "meta.json").write_text(json.dumps(meta))
    raw = root / "data/raw"
    raw.mkdir(parents=True)
    (raw / "source.json").write_text(json.dumps({"source": "synthetic", "root": "data/raw/synthetic"}))
    rows = [{c: "" for c in MANIFEST_COLUMNS} | {"video_id": f"v{i}", "path": f"videos/v{i}.avi",
                                                 "patient_id": f"p{i // 2}", "video_score": i % 4}
            for i in range(6)]
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(raw / "manifest.csv", index=False)
    (root / "data/frames").mkdir(parents=True)
    (root / "data/frames/report.json").write_text(json.dumps({"params": ExtractSection().to_dict()}))
    (root / "metrics").mkdir()
    for group, doc in METRICS.items():
        (root / f"metrics/{group}.json").write_text(json.dumps(doc))
    return {"frame_dir": root / "models/frame", "aggregator_dir": root / "models/aggregator",
            "segmentation_dir": root / "models/segmentation", "raw_dir": raw,
            "frames_report": root / "data/frames/report.json", "metrics_dir": root / "metrics"}


def _export(root: Path, paths: dict[str, Path], **kw) -> dict:
    return export_models(**paths, out_dir=root / "models/export", seed=0, folds=FOLDS,
                         seg_archs=["unet", "deeplabv3plus"], seg_boost=[1, 1, 2, 2, 2],
                         card_path=root / "MODEL_CARD.md", **kw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    _export(root, fake_run(root))
    return root


def test_package_layout_and_manifest(exported):
    out = exported / "models/export"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["seed"] == 0
    assert manifest["frame_model"]["folds"] == FOLDS and manifest["frame_model"]["spec"]["arch"] == "reg_stn"
    project = load_section(FrameModelSection, PROJECT_ROOT / "params.yaml")
    assert manifest["frame_model"]["spec"]["loc_input_size"] == project.loc_input_size
    assert manifest["extract"] == ExtractSection().to_dict()
    assert manifest["data"]["source"] == "synthetic" and manifest["data"]["n_videos"] == 6
    assert manifest["metrics"]["frame"]["reg_stn"]["accuracy"] == 0.8123
    assert {"torch", "torchvision", "opencv", "lus", "numpy"} <= set(manifest["versions"])
    assert manifest["segmentation"]["archs"] == ["unet"]  # deeplabv3plus had no masks: left out
    assert set(manifest["params"]) == {"base", "extract", "frame_model", "aggregator", "segmentation", "cnn_lstm"}
    assert manifest["cnn_lstm"] == {"applicable": 0, "reason": "no CNN-LSTM given to the export"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert set(manifest["files"]) == {"aggregator.json", "frame/fold_0.pt", "frame/fold_1.pt",
                                      "segmentation/unet/fold_0.pt"}


def test_weights_are_copied_and_neutral_elements_averaged(exported):
    out = exported / "models/export"
    for k in FOLDS:
        ours = torch.load(out / f"frame/fold_{k}.pt", weights_only=True)
        theirs = torch.load(exported / f"models/frame/fold_{k}/model.pt", weights_only=True)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[n], theirs[n]) for n in ours)
    agg = json.loads((out / "aggregator.json").read_text())
    np.testing.assert_allclose(agg["neutral"], np.mean([NEUTRAL[0], NEUTRAL[1]], axis=0))
    assert agg["neutral_per_fold"] == {str(k): v for k, v in NEUTRAL.items()}
    bundle = load_bundle(out, fold=1)
    assert bundle.neutral == NEUTRAL[1] and bundle.frame.folds == [1] and bundle.segmentation is not None
    assert load_bundle(out).neutral == pytest.approx(np.mean([NEUTRAL[0], NEUTRAL[1]], axis=0).tolist())


def test_model_card_carries_the_run(exported):
    card = (exported / "MODEL_CARD.md").read_text()
    for text in ("Not a medical device", "SYNTHETIC", "## Intended use", "## Data", "## Training", "## Metrics",
                 "## Known limits", "81.2 / 70.0 / 75.0", "65.4 ± 10.0", "Weak frame labels", "non-commercial",
                 "e = [0.200, 0.200, 0.200, 0.200]", "--fold K"):
        assert text in card, text
    assert "$" not in card  # every template field filled


def test_export_is_byte_identical_when_rerun(exported, tmp_path):
    before = json.loads((exported / "models/export/manifest.json").read_text())["files"]
    paths = fake_run(tmp_path)
    for sub in ("models/frame", "models/segmentation/unet/fold_0"):  # same weights as the first run
        for f in (exported / sub).rglob("model.pt"):
            target = tmp_path / sub / f.relative_to(exported / sub)
            target.write_bytes(f.read_bytes())
    assert _export(tmp_path, paths)["files"] == before


def test_source_without_severity_exports_and_predict_refuses_clearly(tmp_path):
    manifest = _export(tmp_path, fake_run(tmp_path, frame_applicable=False, with_segmentation=False))
    assert manifest["frame_model"]["applicable"] == 0 and manifest["segmentation"]["applicable"] == 0
    assert "not available" in (tmp_path / "MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match="no frame severity model"):
        load_bundle(tmp_path / "models/export")


def test_inconsistent_or_missing_inputs_are_named(tmp_path):
    paths = fake_run(tmp_path)
    meta_path = tmp_path / "models/frame/fold_1/meta.json"
    meta = json.loads(meta_path.read_text())
    meta["params"]["width"] = 0.5
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="fold_1/meta.json"):
        _export(tmp_path, paths)
    (tmp_path / "models/aggregator/fold_0.json").unlink()
    meta["params"]["width"] = FrameModelSection().width
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="fold_0.json.*train_aggregator"):
        _export(tmp_path, paths)
    assert not (tmp_path / "models/export").exists()


def test_stage_reads_its_params_and_dvc_yaml_declares_it(tmp_path):
    import stages.export as stage

    paths = fake_run(tmp_path)
    params = {"base": {"seed": 3}, "split": {"folds": FOLDS}, "segmentation": {"archs": ["unet", "deeplabv3plus"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = stage.build_parser().parse_args([
        "--params", str(tmp_path / "params.yaml"), "--frame-models", str(paths["frame_dir"]),
        "--aggregator", str(paths["aggregator_dir"]), "--segmentation", str(paths["segmentation_dir"]),
        "--raw", str(paths["raw_dir"]), "--frames-report", str(paths["frames_report"]),
        "--metrics", str(paths["metrics_dir"]), "--cnn-lstm", "", "--out", str(tmp_path / "exp"),
        "--card", str(tmp_path / "card.md")])
    stage.main(args)
    assert json.loads((tmp_path / "exp/manifest.json").read_text())["seed"] == 3
    assert (tmp_path / "card.md").is_file()

    dvc = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    export = dvc["stages"]["export"]
    assert export["params"] == ["base.seed", "split.folds", "segmentation.archs", "segmentation.boost"]
    assert "models/export" in export["outs"] and {"MODEL_CARD.md": {"cache": False}} in export["outs"]
    assert all(f"metrics/{g}.json" in export["deps"] for g in ("frame", "video", "segmentation", "cnn_lstm"))
    assert "--cnn-lstm models/cnn_lstm" in export["cmd"]
    assert {"models/cnn_lstm", "lus/models/cnn_lstm.py", "lus/models/backbones.py"} <= set(export["deps"])
    assert dvc["artifacts"]["lus-models"]["path"] == "models/export"
    assert dvc["artifacts"]["lus-models"]["type"] == "model"
