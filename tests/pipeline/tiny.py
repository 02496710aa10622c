"""Tiny pipeline parameters for CI: a few synthetic images/words, one step per training."""

from __future__ import annotations

TINY_NET = ["Backbone={name: MobileNetV3, scale: 0.35, model_name: small, disable_se: true}",
            "Neck={name: DBFPN, out_channels: 16}", "Head={name: DBHead, k: 50}"]


def tiny_role(role: str) -> list[str]:
    """Overrides that shrink one distillation role to a tiny MobileNetV3-small + DBFPN(16)."""
    return [f"Architecture.Models.{role}.{o}" for o in TINY_NET]


STEP = ["Global.max_steps=1", "Global.print_batch_step=1", "Global.eval_batch_step=[0, 100000]",
        "Train.loader.num_workers=0", "Eval.loader.num_workers=0"]
DET_EVAL = ["Eval.dataset.transforms.DetResizeForTest={limit_side_len: 160, limit_type: max}"]
REC_EVAL = ["Eval.dataset.transforms.RecResizeImg.image_shape=[3, 48, 96]"]


def tiny_params(raw_uri: str, store_root: str, launcher: str = "local") -> dict:
    return {
        "raw_data_uri": raw_uri, "store_root": store_root, "epochs": 1, "workers": 1, "launcher": launcher,
        "det_overrides": [*STEP, *DET_EVAL, "Train.dataset.transforms.EastRandomCropData.size=[96, 96]",
                          "Train.loader.batch_size_per_card=2"],
        "teacher_overrides": [*tiny_role("Student"), *tiny_role("Student2")],
        "student_overrides": tiny_role("Teacher"),
        "rec_overrides": [*STEP, *REC_EVAL, "Train.dataset.transforms.RecResizeImg.image_shape=[3, 48, 96]",
                          "Train.loader.batch_size_per_card=4"],
        "det_eval_overrides": DET_EVAL, "rec_eval_overrides": REC_EVAL,
    }
