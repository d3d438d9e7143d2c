"""Training (no ROS): sequential multi-task fine-tuning and reflow distillation of SmolVLA.

* ``common/``: the toolkit both share (errors, optimizer/scheduler settings, the optimisation step,
  checkpoints and resuming, autocast and TensorBoard, the training figure);
* sequential: ``curriculum`` (the stages), ``datasets`` (opened, checked, fixed statistics), ``sampling``
  (replay), ``memory`` (in-memory dataset cache), ``sequential_config`` (settings), ``trainer`` (one stage),
  ``sequential`` (the run), ``distributed`` (DDP helpers and step-keyed noise);
* reflow: ``reflow_config`` (settings), ``reflow_models`` (teacher and student sharing one VLM), ``pairs``
  (the teacher's noise/chunk pairs), ``reflow`` (the run);
* ``cli``: what the Hydra front ends in ``training/`` share.
"""
