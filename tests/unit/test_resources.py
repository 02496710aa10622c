"""Pod resources that follow GPUs (components/launcher/resources.py), golden values by hand."""

from __future__ import annotations

import pytest

from components.launcher.resources import (
    MODEL_TYPES,
    REC_DATA_MS_PER_IMAGE,
    REC_GPU_IMG_S,
    cores_to_feed,
    mebibytes,
    per_gpu_defaults,
    replica_resources,
)


def test_cores_to_feed_is_ms_per_image_times_rate() -> None:
    assert cores_to_feed(552.0, 65.0) == pytest.approx(35.88)  # 65 ms x 552 img/s = 35.88 core-seconds/s
    assert cores_to_feed(100.0, 10.0) == pytest.approx(1.0)


def test_det_defaults_are_capped_and_rec_defaults_follow_its_cost() -> None:
    assert per_gpu_defaults("det") == (12, 6144 + 12 * 512)  # needs ~36 cores: capped at 12
    cores, mib = per_gpu_defaults("rec")  # 1.3 ms x 3260 img/s = 4.2 -> 5 cores
    assert (cores, mib) == (5, 6144 + 5 * 512)


def test_replica_resources_scale_with_gpus_and_keep_shm_inside_the_limit() -> None:
    r = replica_resources(8)
    assert (r.cpu, r.memory, r.loader_workers) == ("97", f"{8 * 12288}Mi", 11)
    assert mebibytes(r.shm) <= mebibytes(r.memory)
    one = replica_resources(1, cpu_per_gpu=4, memory_per_gpu="16Gi")
    assert (one.cpu, one.memory, one.shm) == ("5", "16384Mi", "2048Mi")  # shm: 4 workers x 512 Mi
    assert replica_resources(0).cpu == replica_resources(1).cpu  # a CPU replica is sized as one GPU's worth


def test_replica_resources_follow_the_model_type() -> None:
    assert MODEL_TYPES == ("det", "rec")
    rec = replica_resources(1, model_type="rec")
    cores, mib = per_gpu_defaults("rec")
    assert (rec.cpu, rec.memory, rec.loader_workers) == (str(cores + 1), f"{mib}Mi", cores - 1)
    assert f"rec data costs {REC_DATA_MS_PER_IMAGE:.3g} ms/img/core, a GPU trains {REC_GPU_IMG_S:.0f} img/s" in rec.note
    det = replica_resources(1)
    assert det == replica_resources(1, model_type="det") and det.cpu != rec.cpu and "det data costs" in det.note


@pytest.mark.parametrize("model_type", ["cls", "REC", ""])
def test_unknown_model_type_is_refused(model_type: str) -> None:
    with pytest.raises(ValueError, match=f"model_type {model_type!r}: resources are sized for det or rec"):
        per_gpu_defaults(model_type)
    with pytest.raises(ValueError, match="resources are sized for det or rec"):
        replica_resources(1, model_type=model_type)


@pytest.mark.parametrize("kwargs, match", [
    ({"cpu_per_gpu": 0}, "cpu-per-gpu must be >= 1"),
    ({"memory_per_gpu": "lots"}, "memory quantity 'lots'"),
    ({"memory_per_gpu": "4Gi", "shm": "8Gi"}, "larger than the memory limit"),
])
def test_bad_resource_settings_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        replica_resources(1, **kwargs)


def test_mebibytes() -> None:
    assert mebibytes("16Gi") == 16384 and mebibytes("512Mi") == 512 and mebibytes("1048576") == 1
