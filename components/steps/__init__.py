"""The work behind the pipeline's components, as plain functions tested on their own.

A KFP component (``components/<step>.py``) parses its typed inputs, calls a function here and
writes its outputs; these functions wire ``ocr_core`` (storage, data, engine, export, metrics) and
the launcher together, one concern per module:

* :mod:`components.steps.data` -- the dataset layout; ingest, convert labels, validate, build the
  rec LMDBs and the shard sets (``data_format=shards``); the dataset digest and the retrain DAG's "is this data new?" check;
* :mod:`components.steps.models` -- extract a role, evaluate, export (+ parity), export the start
  models, adopt a published model, the end-to-end system eval and its pictures;
* :mod:`components.steps.train` -- the stage plan, launching the workers (local processes, a
  PyTorchJob, in-process) and the worker itself (``python -m components.steps.train worker``);
* :mod:`components.steps.registry` -- the gate's decision, publish, the production pointer,
  recording the data a published model was trained on;
* :mod:`components.steps.common` -- what they share: content keys, scratch directories, config
  paths, manifests.

Every step reads and writes object storage by URI and returns a small manifest; big data never
travels through the KFP artifact store.
"""
