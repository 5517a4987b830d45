import dataclasses

import pytest
import yaml

from lus.config.base import ParamsError, Section, bounded, choice, listof, load_section
from lus.config.data import BaseSection, DataSection, SplitSection
from tests.conftest import PROJECT_ROOT


@dataclasses.dataclass(frozen=True)
class Demo(Section):
    NAME = "demo"
    mode: str = choice("a", ("a", "b"))
    rate: float = bounded(0.5, 0.0, 1.0)
    count: int = bounded(3, 1, None)
    sizes: list[int] = listof([1, 2])
    maybe: str | None = None


def test_defaults_and_valid_values():
    cfg = Demo.from_dict({"mode": "b", "rate": 1, "sizes": [4]})
    assert cfg.mode == "b" and cfg.rate == 1.0 and isinstance(cfg.rate, float) and cfg.sizes == [4]


@pytest.mark.parametrize("raw, message", [
    ({"mode": "c"}, "demo.mode': 'c' is not allowed; expected one of: a, b"),
    ({"rate": 1.5}, "demo.rate': 1.5 is outside the allowed range [0.0, 1.0]"),
    ({"rate": "fast"}, "demo.rate': expected a number"),
    ({"count": 2.5}, "demo.count': expected an integer"),
    ({"count": True}, "demo.count': expected an integer"),
    ({"sizes": 3}, "demo.sizes': expected a list"),
    ({"sizes": ["x"]}, "demo.sizes[0]': expected an integer"),
    ({"typo": 1}, "unknown key(s) typo; allowed keys: count, maybe, mode, rate, sizes"),
])
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ParamsError) as err:
        Demo.from_dict(raw)
    assert message in str(err.value)


def _project_sections() -> dict[str, type[Section]]:
    """Every params section class of lus.config, by section name."""
    import importlib
    import pkgutil

    import lus.config

    sections = {}
    for mod in pkgutil.iter_modules(lus.config.__path__):
        module = importlib.import_module(f"lus.config.{mod.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Section) and obj is not Section and obj.NAME:
                sections[obj.NAME] = obj
    return sections


def test_project_sections_are_frozen_dataclasses():
    """A stage's params cannot change after validation: every section of lus.config is frozen."""
    sections = _project_sections()
    assert {"base", "data", "split", "frame_model", "aggregator", "cnn_lstm", "segmentation"} <= set(sections)
    for name, cls in sections.items():
        # decorated itself (an undecorated subclass would inherit Section's frozen flag but not its protection)
        assert "__dataclass_params__" in vars(cls) and cls.__dataclass_params__.frozen, name
        cfg = cls.from_dict({})
        for field in dataclasses.fields(cfg):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(cfg, field.name, getattr(cfg, field.name))


def test_project_params_file_is_valid():
    """Every section of the committed params.yaml parses (catches a typo before a stage runs)."""
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    sections = _project_sections()
    assert {"base", "data", "split"} <= set(sections)
    for name, cls in sections.items():
        assert name in raw, f"params.yaml lacks section {name}"
        cls.from_dict(raw[name])
    assert not set(raw) - set(sections), f"sections without a typed class: {set(raw) - set(sections)}"


def test_load_section_errors(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("data:\n  source: dropbox\n")
    with pytest.raises(ParamsError, match="data.source': 'dropbox' is not allowed"):
        load_section(DataSection, p)
    with pytest.raises(ParamsError, match="section 'split' is missing"):
        load_section(SplitSection, p)
    with pytest.raises(ParamsError, match="params file not found"):
        load_section(BaseSection, tmp_path / "nope.yaml")
    p.write_text("split:\n  folds: [0, 2]\n")
    with pytest.raises(ParamsError, match="consecutive ids"):
        load_section(SplitSection, p)


@pytest.mark.parametrize("preset", sorted((PROJECT_ROOT / "presets").glob("*.yaml")), ids=lambda p: p.name)
def test_preset_args_survive_shell_word_splitting(preset):
    """`dvc exp run $(lus preset-args P)`: every -S value is one word and parses back to the preset's value."""
    import yaml

    from lus.cli import main
    from lus.config.presets import preset_to_set_args

    args = preset_to_set_args(preset)
    assert args[::2] == ["-S"] * (len(args) // 2)
    flat = {}

    def walk(node, prefix):
        for k, v in node.items():
            walk(v, f"{prefix}{k}.") if isinstance(v, dict) else flat.__setitem__(f"{prefix}{k}", v)

    walk(yaml.safe_load(preset.read_text()), "")
    for pair in args[1::2]:
        assert not any(c.isspace() for c in pair), pair
        key, value = pair.split("=", 1)
        assert yaml.safe_load(value) == flat[key]
    assert main(["preset-args", str(preset)]) == 0
