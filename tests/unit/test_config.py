"""Config loading, -o overrides and typed validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ocr_core.config import config_hash, dump_config, load_config, load_yaml, validate_config
from ocr_core.config.loader import apply_override, parse_override
from ocr_core.errors import ConfigError


def _write(tmp_path: Path, data: dict, name: str = "c.yml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "item, keys, value",
    [
        ("Global.epoch_num=10", ["Global", "epoch_num"], 10),
        ("Global.pretrained_model=null", ["Global", "pretrained_model"], None),
        ("Global.pretrained_model=None", ["Global", "pretrained_model"], "None"),  # YAML: a string
        ("Global.use_gpu=false", ["Global", "use_gpu"], False),
        ("Global.eval_batch_step=[0, 400]", ["Global", "eval_batch_step"], [0, 400]),
        ("Optimizer.lr.learning_rate=1e-4", ["Optimizer", "lr", "learning_rate"], 1e-4),
        ("Global.save_model_dir=./out=x", ["Global", "save_model_dir"], "./out=x"),
        ("Global.character_dict_path=", ["Global", "character_dict_path"], ""),
        ("Global.infer_img='a b.jpg'", ["Global", "infer_img"], "a b.jpg"),
    ],
)
def test_parse_override_values(item: str, keys: list[str], value: object) -> None:
    got_keys, got_value = parse_override(item)
    assert got_keys == keys
    assert got_value == value and type(got_value) is type(value)


@pytest.mark.parametrize("bad", ["Global.epoch_num", "=3", "Global..x=1", ".a=1"])
def test_parse_override_rejects_malformed(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_override(bad)


def test_override_into_lists_by_index_and_by_op_name() -> None:
    cfg = {"Train": {"dataset": {"transforms": [{"DecodeImage": None}, {"EastRandomCropData": {"size": [960, 960]}}]}}}
    apply_override(cfg, ["Train", "dataset", "transforms", "1", "EastRandomCropData", "size"], [320, 320])
    assert cfg["Train"]["dataset"]["transforms"][1]["EastRandomCropData"]["size"] == [320, 320]
    apply_override(cfg, ["Train", "dataset", "transforms", "EastRandomCropData", "max_tries"], 5)
    assert cfg["Train"]["dataset"]["transforms"][1]["EastRandomCropData"] == {"size": [320, 320], "max_tries": 5}
    # an op configured as `null` becomes a mapping when a key is set inside it
    apply_override(cfg, ["Train", "dataset", "transforms", "DecodeImage", "img_mode"], "BGR")
    assert cfg["Train"]["dataset"]["transforms"][0] == {"DecodeImage": {"img_mode": "BGR"}}
    # a whole op's arguments replaced by name
    apply_override(cfg, ["Train", "dataset", "transforms", "EastRandomCropData"], {"size": [64, 64]})
    assert cfg["Train"]["dataset"]["transforms"][1] == {"EastRandomCropData": {"size": [64, 64]}}


def test_override_errors_name_the_path() -> None:
    cfg = {"Global": {"a": 1}, "Train": {"dataset": {"transforms": [{"X": None}]}}}
    with pytest.raises(ConfigError, match="unknown section 'Nope'"):
        apply_override(cfg, ["Nope", "x"], 1)
    with pytest.raises(ConfigError, match=r"Train\.missing"):
        apply_override(cfg, ["Train", "missing", "x"], 1)
    with pytest.raises(ConfigError, match="out of range"):
        apply_override(cfg, ["Train", "dataset", "transforms", "7", "x"], 1)
    apply_override(cfg, ["Global", "new_leaf"], 3)  # the last component may be new
    assert cfg["Global"]["new_leaf"] == 3


def test_load_config_applies_overrides_in_order(tmp_path: Path) -> None:
    p = _write(tmp_path, {"Global": {"epoch_num": 5}})
    cfg = load_config(p, ["Global.epoch_num=7", "Global.epoch_num=9"])
    assert cfg["Global"]["epoch_num"] == 9
    assert cfg["Global"]["_config_file"] == str(p)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yml"
    p.write_text("Global:\n  epoch_num: 3\n  bad: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yml:\d+"):
        load_yaml(p)


def test_duplicate_keys_keep_last_like_pyyaml(tmp_path: Path) -> None:
    p = tmp_path / "dup.yml"
    p.write_text("Loss:\n  model_name_pairs: [[a, b]]\n  model_name_pairs: [a, b]\n", encoding="utf-8")
    assert load_yaml(p)["Loss"]["model_name_pairs"] == ["a", "b"]


@pytest.mark.parametrize(
    "override, path",
    [
        ("Global.epoch_numm=3", "Global.epoch_numm"),
        ("Global.epoch_num=ten", "Global.epoch_num"),
        ("Global.use_amp=3", "Global.use_amp"),
        ("Architecture.Backbone.scale=big", "Architecture.Backbone.scale"),
        ("Architecture.Backbone.not_a_key=1", "Architecture.Backbone.not_a_key"),
        ("Architecture.Neck.name=NoSuchNeck", "Architecture.Neck.name"),
        ("Loss.alpha=[1]", "Loss.alpha"),
        ("PostProcess.box_thresh=high", "PostProcess.box_thresh"),
        ("Train.loader.batch_size_per_card=2.5", "Train.loader.batch_size_per_card"),
        ("Train.loader.bogus=1", "Train.loader.bogus"),
        ("Train.dataset.transforms.EastRandomCropData.sizes=[1, 2]",
         "Train.dataset.transforms[3].EastRandomCropData.sizes"),
        ("Optimizer.lr.warmup_epochs=2", "Optimizer.lr.warmup_epochs"),
    ],
)
def test_validation_errors_name_key_path_and_file(configs_dir: Path, override: str, path: str) -> None:
    cfg_file = configs_dir / "det" / "det_mv3_db.yml"
    cfg = load_config(cfg_file, [override])
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    msg = str(info.value)
    assert path in msg
    assert "det_mv3_db.yml" in msg


def test_unknown_section_rejected(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {"Global": {}, "Trian": {}}))
    with pytest.raises(ConfigError, match="unknown section 'Trian'"):
        validate_config(cfg)


def _shipped_configs() -> list[Path]:
    root = Path(__file__).resolve().parents[2] / "configs"
    return sorted(root.rglob("*.yml"))


@pytest.mark.parametrize("cfg_file", _shipped_configs(), ids=lambda p: p.name)
def test_every_shipped_config_validates(cfg_file: Path) -> None:
    validate_config(load_config(cfg_file))


def test_dump_round_trip_and_hash(tmp_path: Path, configs_dir: Path) -> None:
    cfg = load_config(configs_dir / "det" / "det_mv3_db.yml", ["Global.epoch_num=3"])
    out = tmp_path / "out" / "config.yml"
    dump_config(cfg, out)
    again = load_config(out)
    assert again["Global"]["epoch_num"] == 3
    assert "_config_file" not in yaml.safe_load(out.read_text())["Global"]
    assert config_hash(cfg) == config_hash(again)
    assert config_hash(cfg) != config_hash(load_config(out, ["Global.epoch_num=4"]))
