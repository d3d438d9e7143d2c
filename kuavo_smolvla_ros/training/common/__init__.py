"""The training toolkit the stage trainer (``training/trainer.py``) and reflow (``training/reflow*.py``)
share, one job per module:

* ``errors``: the package's error types (``TrainingConfigError``, ``TrainingError``);
* ``config``: the YAML settings both runs share, read one way (``OptimConfig``, ``data_cache``), without torch;
* ``optim``: AdamW with warmup + cosine decay and the optimisation step (finite check, clipping, logging);
* ``loop``: bf16 autocast and the TensorBoard writer;
* ``checkpoints``: writing checkpoints atomically, with the training state to resume from, and resuming;
* ``plots``: the two-panel ``training.png`` figure.
"""
