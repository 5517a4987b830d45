"""The ``lus`` command (``python -m lus.cli`` before installation).

Subcommands are registered by small ``_add_<name>`` functions that attach a parser and a handler
``_cmd_<name>(args)``; add new ones the same way and list them in :data:`COMMANDS`.

* ``lus iclus-convert --trust-pickle --src ../shared/data/iclus-frame-predictions --out data/iclus``
  verifies the pinned SHA-256 of the ICLUS pickle and converts it once to Parquet.
* ``lus iclus-table --data data/iclus --out metrics/iclus`` runs the uninorm aggregator (paper
  settings, product/lukasiewicz/min) and the baselines on 5 patient-wise folds and writes a markdown
  table next to the paper's Table 2; ``--protocol traintest|lopo|lovo`` selects the paper's other protocols.
* ``lus aggregator-seeds --iclus data/iclus --out metrics/iclus/seeds`` repeats that comparison over 20
  fold seeds (mean, 95 % interval across seeds, pairwise wins); without ``--iclus`` it reads the
  pipeline's ``data/predictions/frames.parquet``.
* ``lus aggregator-protocols --protocol lopo --out metrics/protocols/lopo`` runs the same comparison on
  the pipeline's out-of-fold frame probabilities under the paper's other protocols (METHODS §2.7).
* ``lus preset-args presets/pocus.yaml`` prints the ``-S key=value`` arguments that apply a preset as
  an experiment: ``dvc exp run $(lus preset-args presets/pocus.yaml)``; ``--apply`` merges it into
  ``params.yaml`` instead.
* ``lus predict VIDEO... --model models/export --out predictions`` scores new videos with the exported
  models (frame probabilities, video score, annotated videos); see :mod:`lus.predict.run`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

from lus.config.base import ParamsError
from lus.data.aggregator_inputs import add_fold_data_args
from lus.data.manifest import ManifestError

USER_ERRORS = (ParamsError, ManifestError, FileNotFoundError, ValueError)


def _cmd_iclus_convert(args: argparse.Namespace) -> None:
    from lus.data.iclus import convert_iclus

    summary = convert_iclus(args.src, args.out, trust_pickle=args.trust_pickle, force=args.force)
    c = summary["counts"]
    state = "up to date" if summary.get("skipped") else "converted"
    print(f"{state}: {args.out} ({c['videos']} videos, {c['patients']} patients, {c['hospitals']} hospitals, "
          f"{c['frames']} frames)")


def _add_iclus_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("iclus-convert", help="convert the ICLUS frame-prediction pickle once to safe Parquet",
                       description="Verify the pinned SHA-256 of frame_predictions.pkl, load it with an allow-list "
                                   "unpickler and write frames.parquet, videos.csv and source.json. Loading a "
                                   "pickle can run code, so --trust-pickle is required.")
    p.add_argument("--src", default="../shared/data/iclus-frame-predictions", help="folder with the ICLUS files")
    p.add_argument("--out", default="data/iclus", help="output folder (default: data/iclus)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading the pickle (only if its SHA-256 matches the pinned published file)")
    p.add_argument("--force", action="store_true", help="convert again even if the output is up to date")
    p.set_defaults(func=_cmd_iclus_convert)


def _cmd_iclus_table(args: argparse.Namespace) -> None:
    from lus.evaluation.iclus import iclus_table

    command = "lus " + " ".join(shlex.quote(a) for a in args.argv)
    summary = iclus_table(args.data, args.out, n_folds=args.folds, seed=args.seed, tnorms=args.tnorms,
                          command=command, protocol=args.protocol)
    print(f"wrote {args.out}/table.md and metrics.json")
    for method in ("uninorm_product", "uninorm_lukasiewicz", "uninorm_min", "argmax_mean", "max_argmax", "majority"):
        if method in summary:
            m = summary[method]
            print(f"  {method:20s} weighted F1 {100 * m['f1_weighted_mean']:5.1f} ± {100 * m['f1_weighted_std']:4.1f}"
                  f"  pooled {100 * m['f1_weighted_pooled']:5.1f}")


def _add_iclus_table(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("iclus-table", help="Table 2 on the ICLUS frame predictions (aggregator vs baselines)")
    p.add_argument("--data", default="data/iclus", help="converted ICLUS folder (lus iclus-convert)")
    p.add_argument("--out", default="metrics/iclus", help="output folder for table.md and metrics.json")
    p.add_argument("--folds", type=int, default=5, help="number of patient-wise folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--protocol", default="kfold", choices=["kfold", "traintest", "lopo", "lovo"],
                   help="kfold: --folds patient-wise folds (paper); traintest: the frame model's published "
                        "train/test split; lopo / lovo: leave one patient / video out (METHODS §2.7)")
    p.add_argument("--tnorms", nargs="+", default=["product", "lukasiewicz", "min"],
                   choices=["product", "lukasiewicz", "min"], help="t-norms to compare (product is the paper's)")
    p.set_defaults(func=_cmd_iclus_table)


def _cmd_aggregator_protocols(args: argparse.Namespace) -> None:
    from lus.evaluation.iclus import pipeline_table

    command = "lus " + " ".join(shlex.quote(a) for a in args.argv)
    summary = pipeline_table(args.frames, args.folds, args.manifest, args.out, n_folds=args.n_folds, seed=args.seed,
                             tnorms=args.tnorms, command=command, protocol=args.protocol)
    print(f"wrote {args.out}/table.md and metrics.json ({args.protocol})")
    for method in ("uninorm_product", "uninorm_min", "argmax_mean", "max_argmax", "majority"):
        if method in summary:
            print(f"  {method:20s} pooled weighted F1 {100 * summary[method]['f1_weighted_pooled']:5.1f}")


def _add_aggregator_protocols(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregator-protocols", help="Table 2 on the pipeline's predictions under the paper's "
                                                    "protocols (kfold, traintest, lopo, lovo)")
    add_fold_data_args(p)
    p.add_argument("--out", required=True, help="output folder for table.md and metrics.json")
    p.add_argument("--protocol", default="lopo", choices=["kfold", "traintest", "lopo", "lovo"],
                   help="kfold: --n-folds re-drawn patient-wise folds; traintest: the pipeline's fold 0 (its test "
                        "patients vs the rest); lopo / lovo: leave one patient / video out (METHODS §2.7)")
    p.add_argument("--n-folds", type=int, default=5, help="kfold: number of patient-wise folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="kfold: seed of the fold assignment (default 0)")
    p.add_argument("--tnorms", nargs="+", default=["product", "min"], choices=["product", "lukasiewicz", "min"],
                   help="uninorm t-norms to include (paper settings)")
    p.set_defaults(func=_cmd_aggregator_protocols)


def _cmd_aggregator_seeds(args: argparse.Namespace) -> None:
    from lus.config.aggregator import paper_config
    from lus.evaluation.seeds import seed_comparison
    from lus.io import write_json, write_text
    from lus.report.iclus import render_seed_table

    if args.iclus:
        from lus.data.iclus import load_iclus
        from lus.evaluation.iclus import iclus_videos

        allv = iclus_videos(*load_iclus(args.iclus))
        title = "ICLUS: aggregator comparison over fold seeds"
    else:
        from lus.data.aggregator_inputs import load_labelled_videos

        allv = load_labelled_videos(args.frames, args.folds, args.manifest)
        title = f"Pipeline ({args.frames}): aggregator comparison over fold seeds"
    configs = {t: paper_config(t) for t in args.tnorms}
    result = seed_comparison(allv, list(range(args.first_seed, args.first_seed + args.seeds)), configs, args.n_folds)
    command = "lus " + " ".join(shlex.quote(a) for a in args.argv)
    write_json(Path(args.out) / "seeds.json", result)
    write_text(Path(args.out) / "seeds.md", render_seed_table(result, title, command))
    print(f"wrote {args.out}/seeds.md and seeds.json")
    for m, s in result["summary"].items():
        print(f"  {m:22s} pooled weighted F1 {100 * s['pooled_mean']:5.1f} "
              f"[{100 * s['pooled_ci_low']:.1f}, {100 * s['pooled_ci_high']:.1f}]")


def _add_aggregator_seeds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregator-seeds", help="aggregator vs baselines repeated over fold seeds (mean, 95%% "
                                                "interval, pairwise wins) on ICLUS or the pipeline's predictions")
    p.add_argument("--iclus", default=None, help="converted ICLUS folder; without it the pipeline files are used")
    add_fold_data_args(p)  # the pipeline inputs (without --iclus)
    p.add_argument("--out", required=True, help="output folder for seeds.md and seeds.json")
    p.add_argument("--seeds", type=int, default=20, help="number of fold seeds (default 20)")
    p.add_argument("--first-seed", type=int, default=0, help="first fold seed (default 0)")
    p.add_argument("--n-folds", type=int, default=5, help="patient-wise folds per seed (default 5)")
    p.add_argument("--tnorms", nargs="+", default=["product", "min"], choices=["product", "lukasiewicz", "min"],
                   help="uninorm t-norms to include (paper settings)")
    p.set_defaults(func=_cmd_aggregator_seeds)


def _cmd_external(args: argparse.Namespace) -> None:
    from lus.config.base import load_section
    from lus.config.baselines import BaselinesSection
    from lus.config.extract import ExtractSection
    from lus.evaluation.external import run_external

    logging.getLogger("lus.external").setLevel(logging.INFO)
    m = run_external(args.train, args.test, Path(args.shared), load_section(ExtractSection, args.params),
                     load_section(BaselinesSection, args.params), Path(args.out), Path(args.work),
                     input_size=args.input_size, max_frames=args.max_frames, cv_folds=args.cv_folds, seed=args.seed,
                     progress=not args.no_progress)
    name = f"{args.train.replace('-', '_')}_to_{args.test.replace('-', '_')}"
    print(f"{args.train} -> {args.test}: patient accuracy {m['patient.accuracy']:.3f} (sensitivity "
          f"{m['patient.sensitivity']:.3f}, specificity {m['patient.specificity']:.3f}, AUC {m['patient.auc']:.3f}); "
          f"chance {m['chance.patient_accuracy_majority']:.3f} (larger class) -> {args.out}/{name}.md")


def _add_external(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("external", help="cross-dataset COVID-19 detection: train on one real source, score another "
                                        "zero-shot, per patient (e.g. --train pocus --test covid-blues)")
    p.add_argument("--train", required=True, choices=["pocus", "covid-blues"], help="training source")
    p.add_argument("--test", required=True, choices=["pocus", "covid-blues"], help="test source (never fitted on)")
    p.add_argument("--shared", default="../shared/data", help="folder holding the sources (read in place)")
    p.add_argument("--params", default="params.yaml", help="params file: extract settings and the baselines "
                                                           "section's backbone, C grid and iterations")
    p.add_argument("--out", default="metrics/external", help="output folder for <train>_to_<test>.{json,md,csv}")
    p.add_argument("--work", default=".cache/external", help="cache of extracted frames and features")
    p.add_argument("--input-size", type=int, default=112, help="square frame size for the backbone (default 112)")
    p.add_argument("--max-frames", type=int, default=16, help="frames per video, evenly spread (default 16)")
    p.add_argument("--cv-folds", type=int, default=5, help="patient-grouped folds to choose C on the training source")
    p.add_argument("--seed", type=int, default=0, help="seed of those folds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_external)


def _cmd_predict(args: argparse.Namespace) -> None:
    from lus.predict.command import run_predict
    from lus.predict.run import MIDDLE, PredictOptions

    snapshot = args.snapshot_frame if args.snapshot_frame is not None else MIDDLE if args.snapshot else None
    opts = PredictOptions(video=not args.no_video, segmentation=not args.no_segmentation,
                          video_format=args.video_format, snapshot=snapshot, chunk_size=args.chunk_size,
                          progress=not args.no_progress)
    run_predict(args.videos, args.model, args.out, args.fold, args.device, args.threads, opts)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score new videos with the exported models (lus predict VIDEO... --out DIR)",
                       description="For each video (mp4, avi, mov, mpeg, gif, ...): the training preprocessing (sector "
                                   "crop, grey, resize), per-frame severity probabilities (frames.csv), the uninorm "
                                   "video score (video.json), an annotated copy with the frame score and the Reg-STN "
                                   "crop boxes, and a segmentation overlay video when the export has segmentation "
                                   "models; with a CNN-LSTM in the export, the video's diagnosis (video.json and a band "
                                   "in the annotated copy). Outputs go to OUT/<video name>/. Research use only, not a "
                                   "medical device.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    p.add_argument("--model", default="models/export", help="exported models (dvc repro export; default models/export)")
    p.add_argument("--out", required=True, help="output folder (one subfolder per video)")
    p.add_argument("--fold", type=int, default=None,
                   help="use fold K's frame model, neutral elements and CNN-LSTM only (default: mean softmax of all "
                        "folds)")
    p.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:N | auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = all cores)")
    p.add_argument("--video-format", choices=["mp4", "avi"], default="mp4",
                   help="annotated videos as mp4 (MPEG-4 part 2, mp4v) or avi (Motion-JPEG); OpenCV cannot write H.264")
    p.add_argument("--no-video", action="store_true", help="skip the annotated video")
    p.add_argument("--no-segmentation", action="store_true", help="skip the segmentation overlay video")
    p.add_argument("--snapshot", action="store_true", help="also save the middle annotated frame as snapshot.png")
    p.add_argument("--snapshot-frame", type=int, default=None, metavar="N",
                   help="save frame N (source frame number) as snapshot.png instead of the middle one")
    p.add_argument("--chunk-size", type=int, default=32, help="frames decoded and scored together (memory bound)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _cmd_preset_args(args: argparse.Namespace) -> None:
    from lus.config.presets import apply_preset, preset_to_set_args

    if args.apply:
        apply_preset(args.params, args.preset)
        print(f"merged {args.preset} into {args.params}")
    else:
        print(" ".join(preset_to_set_args(args.preset)))  # unquoted: meant for $(...) word splitting


def _add_preset_args(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preset-args", help="a preset as `dvc exp run -S` arguments (or --apply it to params.yaml)",
                       description="Print the -S key=value arguments of a preset: "
                                   "dvc exp run $(lus preset-args presets/pocus.yaml)")
    p.add_argument("preset", help="a presets/*.yaml file")
    p.add_argument("--apply", action="store_true", help="merge the preset into --params instead of printing")
    p.add_argument("--params", default="params.yaml")
    p.set_defaults(func=_cmd_preset_args)


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_iclus_convert, _add_iclus_table,
                                                                      _add_aggregator_protocols, _add_aggregator_seeds,
                                                                      _add_external, _add_predict, _add_preset_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lus", description="Lung-ultrasound deep-learning pipeline tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
