"""Mid-epoch resume of a ShardDataSet run seeks instead of replaying (issue #16).

A step checkpoint (``Global.save_step_interval``) of a run training on a ShardDataSet records every
rank's data position (``epoch_progress.data_state``). The resumed run moves the dataset there
(``load_state_dict``) and restores the step's RNG: the skipped part of the epoch is never read, and
the run ends bit-identical to one never interrupted. Every sample read is recorded (a wrapped
``ShardDataSet._raw_sample`` appends to a file, so forked loader workers record too), and the
training step draws from torch's RNG (dropout on its input), so a resume that trained on other
random numbers would show.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ocr_core.data.shard_format import build_shards
from ocr_core.data.shards import ShardDataSet
from ocr_core.engine import loop
from ocr_core.engine.resume import _resume_position
from ocr_core.engine.run import TrainHooks, train
from ocr_core.weights.checkpoint import load_checkpoint
from tests.integration.det_fixtures import det_config, make_det_split
from tests.integration.shard_fixtures import make_set


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def det_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 synthetic det images (random crop + flips/rotation in the config) in several shards."""
    root = tmp_path_factory.mktemp("det")
    label = make_det_split(root / "train", num=8, seed=41, size=(160, 128))
    make_det_split(root / "eval", num=1, seed=42, size=(160, 128))
    build_shards([str(label)], str(root / "train"), str(root / "shards"), "det", "40KB", quiet=True)
    return root


@pytest.fixture()
def reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file every decoded sample is appended to (``epoch<TAB>path``), in loader workers too."""
    log = tmp_path / "reads.txt"
    raw = ShardDataSet._raw_sample

    def recorded(self: ShardDataSet, idx: int) -> dict:
        out = raw(self, idx)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{self.epoch}\t{out['img_path']}\n")
        return out

    monkeypatch.setattr(ShardDataSet, "_raw_sample", recorded)
    forward = loop.forward_model

    def noisy(model, batch, model_type, training):  # type: ignore[no-untyped-def]
        if training:  # the step itself draws from torch's RNG, as dropout layers do
            batch = [torch.nn.functional.dropout(batch[0], p=0.2, training=True), *batch[1:]]
        return forward(model, batch, model_type, training)

    monkeypatch.setattr(loop, "forward_model", noisy)
    return log


def take(log: Path) -> list[str]:
    """The reads recorded so far (then start a new record)."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def _cfg(root: Path, out: Path, *extra: str) -> dict:
    cfg = det_config(root / "train", root / "eval", out, "Global.num_threads=1", "Global.print_batch_step=1",
                     "Global.eval_at_end=false", *extra, crop=96, batch=2, epochs=2)
    cfg["Train"]["dataset"] = {"name": "ShardDataSet", "data_dir": str(root / "shards"), "shuffle_buffer": 4,
                               "transforms": cfg["Train"]["dataset"]["transforms"]}
    return cfg


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def kill_at_6(run, state) -> bool:  # type: ignore[no-untyped-def]
    if state.global_step == 6:  # epoch 2, second step; the last step checkpoint is step 5
        raise Killed
    return False


@pytest.mark.parametrize("workers", [0, 2])
def test_a_shard_run_resumed_mid_epoch_reads_nothing_twice_and_ends_bit_identical(
        det_shards: Path, tmp_path: Path, reads: Path, workers: int) -> None:
    loader = f"Train.loader.num_workers={workers}"
    train(_cfg(det_shards, tmp_path / "ref", loader))  # 2 epochs x 4 steps, never interrupted
    ref_reads = take(reads)
    ref_epoch2 = [r for r in ref_reads if r.startswith("2\t")]
    assert len(ref_epoch2) == 8 and len(ref_reads) == 16  # no rejected crop: one read per sample

    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        train(_cfg(det_shards, cut, loader, "Global.save_step_interval=5"), hooks=TrainHooks(after_step=kill_at_6))
    take(reads)
    ck = load_checkpoint(cut / "latest.pt")
    progress = ck["epoch_progress"]
    assert (ck["global_step"], progress["epoch"], progress["batches"]) == (5, 2, 1)
    assert [{k: s[k] for k in ("epoch", "samples", "rank", "world_size")} for s in progress["data_state"]] == \
        [{"epoch": 2, "samples": 2, "rank": 0, "world_size": 1}]

    resumed = train(_cfg(det_shards, cut, loader, f"Global.checkpoints={cut / 'latest.pt'}"))
    assert resumed["global_step"] == 8
    got = take(reads)
    if workers == 0:  # one process: the exact sequence of the reference's epoch 2 after its first batch
        assert got == ref_epoch2[2:]
    else:  # two workers append in their own rhythm: the same reads, in some interleaving
        assert len(got) == 6 and not Counter(got) - Counter(ref_epoch2)
    assert _same(_weights(tmp_path / "ref" / "latest.pt"), _weights(cut / "latest.pt"))


def test_the_replay_path_reads_the_skipped_batches_again(det_shards: Path, tmp_path: Path, reads: Path) -> None:
    """Controls from one step checkpoint: without its data position the resume replays the epoch's
    first batch (read again, same weights); without the step's RNG the dropout draws differ."""
    train(_cfg(det_shards, tmp_path / "ref"))
    ref_epoch2 = [r for r in take(reads) if r.startswith("2\t")]
    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        train(_cfg(det_shards, cut, "Global.save_step_interval=5"), hooks=TrainHooks(after_step=kill_at_6))
    take(reads)
    ck = load_checkpoint(cut / "latest.pt")
    ref = _weights(tmp_path / "ref" / "latest.pt")

    def resume(name: str, edit) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
        out = tmp_path / name
        out.mkdir()
        edited = {**ck, "epoch_progress": dict(ck["epoch_progress"])}
        edit(edited)
        torch.save(edited, out / "start.pt")
        train(_cfg(det_shards, out, f"Global.checkpoints={out / 'start.pt'}"))
        return _weights(out / "latest.pt")

    replayed = resume("replay", lambda c: c["epoch_progress"].pop("data_state"))
    assert take(reads) == ref_epoch2  # the first batch was read (and augmented) a second time
    assert _same(ref, replayed)
    other_rng = resume("rng", lambda c: c.pop("rng"))  # the resume keeps the fresh seed's streams
    assert take(reads) == ref_epoch2[2:]
    assert not _same(ref, other_rng)


def test_two_ranks_seek_to_their_own_positions_and_one_rank_rescales(det_shards: Path, tmp_path: Path) -> None:
    """2 ranks (gloo, operator env): rank 1 is SIGKILLed after step 4 (epoch 2's second step), the
    last step checkpoint being step 3; the resumed 2-rank run seeks each rank to its own position and
    ends on the reference's weights. The same checkpoint resumed by 1 rank continues after
    ``1 batch x 2 ranks`` of its 4-batch epoch (the dataset's rescaling and the engine's count agree)."""
    from tests.integration.test_step_checkpoints import _ranks

    assert _ranks(_cfg(det_shards, tmp_path / "ref"), tmp_path, 2) == [0, 0]
    cut = tmp_path / "cut"
    codes = _ranks(_cfg(det_shards, cut, "Global.save_step_interval=3"), tmp_path, 2, kill=(4, 1))
    assert codes[0] != 0 and codes[1] != 0
    ck = load_checkpoint(cut / "latest.pt")
    assert ck["global_step"] == 3 and ck["epoch_progress"]["batches"] == 1
    assert [(s["rank"], s["samples"], s["world_size"]) for s in ck["epoch_progress"]["data_state"]] == \
        [(0, 2, 2), (1, 2, 2)]
    (tmp_path / "one").mkdir()
    torch.save(ck, tmp_path / "one" / "start.pt")
    assert _ranks(_cfg(det_shards, cut, f"Global.checkpoints={cut / 'latest.pt'}"), tmp_path, 2) == [0, 0]
    assert load_checkpoint(cut / "latest.pt")["global_step"] == 4
    assert _same(_weights(tmp_path / "ref" / "latest.pt"), _weights(cut / "latest.pt"))

    one = train(_cfg(det_shards, tmp_path / "one", f"Global.checkpoints={tmp_path / 'one' / 'start.pt'}"))
    assert one["global_step"] == 3 + 2  # epoch 2 of 4 batches at world 1, the first 2 counted as done


@pytest.fixture(scope="module")
def rec_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec")
    label = make_set(root / "src", 60, "rec")
    build_shards([str(label)], str(root / "src"), str(root / "shards"), "rec", "12KB", quiet=True)
    return root / "shards"


@pytest.mark.parametrize(("batches", "old_world", "new_world", "batch"),
                         [(3, 2, 4, 2), (5, 1, 3, 4), (4, 4, 2, 3), (1, 3, 2, 1), (4, 2, 3, 2), (2, 3, 4, 5)])
def test_another_world_size_skips_what_the_engine_counts(rec_shards: Path, batches: int, old_world: int,
                                                         new_world: int, batch: int) -> None:
    """The dataset's own rescaling (``load_state_dict``) lands on the batch the engine's rule
    (``_resume_position``: ``batches x old_world // new_world``) says the epoch continues from."""
    ds = ShardDataSet(str(rec_shards), transforms=[{"KeepKeys": {"keep_keys": ["label"]}}])
    ds.configure(0, new_world, batch)
    saved = {"epoch": 3, "samples": batches * batch, "rank": 0, "world_size": old_world, "seed": ds.seed,
             "index": ds.index.digest}
    run = SimpleNamespace(dist=SimpleNamespace(world_size=new_world, rank=0), state=SimpleNamespace(epoch=0))
    pos = _resume_position(run, {"epoch": 3, "batches": batches, "world_size": old_world,  # type: ignore[arg-type]
                                 "data_state": [saved] * old_world}, "ck")
    ds.load_state_dict(pos["data_state"])
    assert ds.state_dict()["samples"] == pos["batches"] * batch == batches * old_world // new_world * batch
    assert run.state.epoch == 3
