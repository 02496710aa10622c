"""Tiny pipeline parameters for CI: a few synthetic images/words, one step per training."""

from __future__ import annotations

from pathlib import Path

TINY_NET = ["Backbone={name: MobileNetV3, scale: 0.35, model_name: small, disable_se: true}",
            "Neck={name: DBFPN, out_channels: 16}", "Head={name: DBHead, k: 50}"]


def tiny_role(role: str) -> list[str]:
    """Overrides that shrink one distillation role to a tiny MobileNetV3-small + DBFPN(16)."""
    return [f"Architecture.Models.{role}.{o}" for o in TINY_NET]


STEP = ["Global.max_steps=1", "Global.print_batch_step=1", "Global.eval_batch_step=[0, 100000]",
        "Train.loader.num_workers=0", "Eval.loader.num_workers=0"]
DET_EVAL = ["Eval.dataset.transforms.DetResizeForTest={limit_side_len: 160, limit_type: max}"]
REC_EVAL = ["Eval.dataset.transforms.RecResizeImg.image_shape=[3, 48, 96]"]


def tiny_params(raw_uri: str, store_root: str, launcher: str = "local", det_recipe: str = "finetune",
                det_teacher_init_uri: str = "", data_format: str = "files") -> dict:
    """``finetune`` trains the plain PP-OCRv3 student (from scratch: no det_pretrained_uri); ``cml``
    shrinks the DML teacher and the CML teacher role to :data:`TINY_NET`."""
    return {
        "raw_data_uri": raw_uri, "store_root": store_root, "epochs": 1, "workers": 1, "launcher": launcher,
        "det_recipe": det_recipe, "det_teacher_init_uri": det_teacher_init_uri, "data_format": data_format,
        "det_overrides": [*STEP, *DET_EVAL, "Train.dataset.transforms.EastRandomCropData.size=[96, 96]",
                          "Train.loader.batch_size_per_card=2"],
        "teacher_overrides": [*tiny_role("Student"), *tiny_role("Student2")],
        "student_overrides": tiny_role("Teacher"),
        "rec_overrides": [*STEP, *REC_EVAL, "Train.dataset.transforms.RecResizeImg.image_shape=[3, 48, 96]",
                          "Train.loader.batch_size_per_card=4"],
        "det_eval_overrides": DET_EVAL, "rec_eval_overrides": REC_EVAL,
    }


def tiny_teacher_init(tmp: Path, uri: str) -> str:
    """A random-init :data:`TINY_NET` det checkpoint published at ``uri`` (``model.pt``): what
    ``det_teacher_init_uri`` stages into the tiny DML teacher's two roles."""
    from ocr_core.config import load_config
    from ocr_core.modeling import build_model
    from ocr_core.storage.manifest import sync_up
    from ocr_core.weights.checkpoint import save_checkpoint

    cfg = load_config(None, ["Architecture.model_type=det", "Architecture.algorithm=DB",
                             *[f"Architecture.{o}" for o in TINY_NET]], base={"Architecture": {}})
    model = build_model(dict(cfg["Architecture"]))
    (tmp / "init").mkdir(parents=True, exist_ok=True)
    save_checkpoint(tmp / "init" / "model.pt", {"model": model.state_dict(), "architecture": cfg["Architecture"],
                                                "model_type": "det", "config": {"Architecture": cfg["Architecture"]},
                                                "charset": None, "epoch": 0, "global_step": 0})
    return sync_up(tmp / "init", uri, kind="model", quiet=True, extra={"checkpoint": "model.pt"}).prefix
