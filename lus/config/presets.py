"""Presets: partial params files deep-merged over params.yaml (``presets/*.yaml``).

A preset names only the keys it changes, e.g. ``presets/tiny.yaml`` for tests and CI or
``presets/paper_frame.yaml`` for the paper's frame-model settings. Merging keeps comments out of
scope on purpose: the merged file is meant for a scratch copy or an experiment, and the result is
validated like any params file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from lus.config.base import ParamsError, read_params_file


def deep_merge(base: dict[str, Any], override: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in; a key the base lacks is an error (typo guard)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{where}.{key}" if where else key
        if key not in out:
            raise ParamsError(f"preset key '{dotted}' does not exist in params.yaml")
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = deep_merge(out[key], value, dotted)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_preset(params_path: str | Path, preset_path: str | Path, out_path: str | Path | None = None) -> dict[str, Any]:
    """Merge a preset into a params file and write it (to ``out_path`` or in place)."""
    merged = deep_merge(read_params_file(params_path), read_params_file(preset_path))
    Path(out_path or params_path).write_text(yaml.safe_dump(merged, sort_keys=False))
    return merged


def preset_to_set_args(preset_path: str | Path) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run`` that apply a preset as an experiment."""

    def walk(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict):
            return [arg for k, v in node.items() for arg in walk(v, f"{prefix}.{k}" if prefix else k)]
        value = yaml.safe_dump(node, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
        if isinstance(node, list):  # "[0,1,2]": no spaces, so `dvc exp run $(lus preset-args ...)` splits it right
            value = value.replace(", ", ",")
        return [f"{prefix}={value}"]

    return [a for pair in walk(read_params_file(preset_path), "") for a in ("-S", pair)]
