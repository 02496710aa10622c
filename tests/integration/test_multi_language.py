"""PaddleOCR's multi-language recognition configs build and train (#18 item 2).

Each of the 10 ``configs/rec/multi_language/rec_*_lite_train.yml`` (PaddleOCR release/2.10,
MobileNetV3 small x0.5 + BiLSTM(48) + CTC, keys and values kept) is loaded unmodified except for
data paths and test sizing; its dictionary resolves to the copy shipped in ``ocr_core/dicts/``;
the model built from it has one CTC class per dictionary entry (+ space, + blank); and it trains
2 steps (batch 2) on a handful of word images rendered from that dictionary.

Rendering needs a font that covers the script. The installed fonts are searched (matplotlib's
DejaVu Sans, then ``/usr/share/fonts``); a case whose script no installed font covers is skipped
and the skip names the missing font package. Only the rendering and training
skip: every config is loaded, validated and its model built (head size checked against its
dictionary) whatever fonts are installed.
"""

from __future__ import annotations

import math
import os
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_core.build import create_model
from ocr_core.config.resolve import load_charset, resolve_config
from ocr_core.data.dictionary import DICTS_DIR, read_dict_file, resolve_dict_path
from ocr_core.engine.run import train
from ocr_core.errors import ConfigError
from tests.integration.rec_fixtures import ROOT, rec_config

CONFIG_DIR = ROOT / "configs" / "rec" / "multi_language"

# config language -> (dictionary name or None for the 36-char default, font package naming the script)
LANGUAGES = {
    "arabic": ("arabic_dict.txt", "fonts-dejavu-core (DejaVu Sans, Arabic)"),
    "cyrillic": ("cyrillic_dict.txt", "fonts-dejavu-core (DejaVu Sans, Cyrillic)"),
    "devanagari": ("devanagari_dict.txt", "fonts-noto-core (Noto Sans Devanagari)"),
    "en_number": ("en_dict.txt", "fonts-dejavu-core (DejaVu Sans)"),
    "french": ("french_dict.txt", "fonts-dejavu-core (DejaVu Sans)"),
    "german": ("german_dict.txt", "fonts-dejavu-core (DejaVu Sans)"),
    "japan": ("japan_dict.txt", "fonts-noto-cjk (Noto Sans CJK JP)"),
    "korean": ("korean_dict.txt", "fonts-noto-cjk (Noto Sans CJK KR)"),
    "latin": ("latin_dict.txt", "fonts-dejavu-core (DejaVu Sans)"),
    "multi_language": (None, "fonts-dejavu-core (DejaVu Sans)"),
}
MIN_COVERAGE = 0.9  # share of the dictionary's visible characters a font must have glyphs for
NUM_WORDS = 4


def test_the_ten_upstream_configs_are_shipped() -> None:
    shipped = sorted(p.name for p in CONFIG_DIR.glob("rec_*_lite_train.yml"))
    assert shipped == sorted(f"rec_{lang}_lite_train.yml" for lang in LANGUAGES)
    for dict_name, _ in LANGUAGES.values():
        if dict_name:
            assert (DICTS_DIR / dict_name).is_file(), dict_name
    readme = (DICTS_DIR / "README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in readme and "release/2.10" in readme
    # an upstream language dictionary we do not ship says where to get it
    with pytest.raises(ConfigError, match="release/2.10/ppocr/utils/dict/hebrew_dict.txt"):
        resolve_dict_path("ppocr/utils/dict/hebrew_dict.txt")


def _font_files() -> list[Path]:
    import matplotlib

    mpl = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    found = [mpl] if mpl.is_file() else []
    for root in ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts")):
        if os.path.isdir(root):
            for dirpath, _, names in os.walk(root):
                found += [Path(dirpath, n) for n in sorted(names) if n.lower().endswith((".ttf", ".otf", ".ttc"))]
    return found


@cache
def _cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), fontNumber=0, lazy=True)
        return frozenset(font.getBestCmap() or {})
    except Exception:  # a font fontTools cannot read is simply not a candidate
        return frozenset()


def _pick_font(chars: list[str]) -> tuple[Path | None, list[str], float]:
    """The installed font covering most of ``chars``: (path, covered chars, coverage)."""
    visible = sorted({c for c in chars if c.strip() and len(c) == 1})
    best: tuple[Path | None, list[str], float] = (None, [], 0.0)
    for path in _font_files():
        cmap = _cmap(path)
        covered = [c for c in visible if ord(c) in cmap]
        share = len(covered) / max(1, len(visible))
        if share > best[2]:
            best = (path, covered, share)
    return best


def _render_words(out: Path, font_path: Path, alphabet: list[str], num: int, seed: int) -> Path:
    """Write ``num`` word crops drawn from ``alphabet`` and ``out/rec_gt.txt``."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    font = ImageFont.truetype(str(font_path), 24)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(num):
        text = "".join(alphabet[int(k)] for k in rng.integers(0, len(alphabet), int(rng.integers(3, 7))))
        x0, y0, x1, y1 = font.getbbox(text)
        img = Image.new("RGB", (max(8, x1 - x0 + 8), max(8, y1 - y0 + 8)), (235, 235, 230))
        ImageDraw.Draw(img).text((4 - x0, 4 - y0), text, font=font, fill=(20, 20, 20))
        cv2.imwrite(str(out / "images" / f"word_{i}.png"), cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR))
        lines.append(f"images/word_{i}.png\t{text}\n")
    label = out / "rec_gt.txt"
    label.write_text("".join(lines), encoding="utf-8")
    return label


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_multi_language_config_builds_and_trains(lang: str, tmp_path: Path) -> None:
    dict_name, font_pkg = LANGUAGES[lang]
    config = f"configs/rec/multi_language/rec_{lang}_lite_train.yml"
    # the upstream dictionary path (ppocr/utils/dict/<name>) resolves to the shipped copy
    if dict_name:
        assert resolve_dict_path(f"ppocr/utils/dict/{dict_name}").parent == DICTS_DIR
        chars = read_dict_file(DICTS_DIR / dict_name)
    else:
        chars = list("0123456789abcdefghijklmnopqrstuvwxyz")
    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    cfg = rec_config(train_dir, eval_dir, tmp_path / "out", "Global.max_steps=2", "Global.num_threads=1",
                     config=config, batch=2)
    # the architecture is upstream's: MobileNetV3 small x0.5 (rec strides) + BiLSTM(48) + CTC
    arch = cfg["Architecture"]
    assert (arch["Backbone"]["name"], arch["Backbone"]["model_name"], arch["Backbone"]["scale"]) == \
        ("MobileNetV3", "small", 0.5)
    assert (arch["Neck"]["encoder_type"], arch["Neck"]["hidden_size"], arch["Head"]["name"]) == ("rnn", 48, "CTCHead")

    resolved = resolve_config(cfg)  # validates, and sizes the head from the dictionary (as `train` does)
    model = create_model(resolved)
    charset = load_charset(resolved)
    use_space = bool(cfg["Global"].get("use_space_char")) and dict_name is not None
    assert len(charset) == len(chars) + (1 if use_space else 0)
    head_out = [m for m in model.modules() if m.__class__.__name__ == "Linear"][-1].out_features
    assert head_out == len(charset) + 1  # + the CTC blank

    # only rendering + training need a font covering the script; the checks above ran regardless
    font, covered, share = _pick_font(chars)
    if font is None or share < MIN_COVERAGE:
        pytest.skip(f"{lang}: no installed font covers its script ({dict_name or 'default 0-9a-z'}: best "
                    f"{font.name if font else 'none'} has {share:.0%} of the glyphs); install Debian {font_pkg} "
                    f"(config built and checked: head {head_out} = {len(charset)} chars + blank)")
    assert _render_words(train_dir, font, covered, NUM_WORDS, 1).parent == train_dir
    assert _render_words(eval_dir, font, covered, 2, 2).parent == eval_dir
    res = train(cfg)
    assert res["global_step"] == 2
    loss = res["last_epoch"].get("loss")
    assert loss is not None and math.isfinite(loss), res["last_epoch"]
