"""Distillation: the KD losses, the training loop, teacher training and the Ray Tune driver.

May import: ``core``, ``runfiles``, ``scoring``, ``hardware``, ``data``, ``engine`` (run directories, the Ray helpers).

* :mod:`studentnas.distill.losses`: the registered losses and ``compose_losses`` (``studentnas list losses``);
* :mod:`studentnas.distill.trainer`: :func:`train`, the one loop used in and out of Ray, fed by
  :class:`Batches` and the teacher-logit cache (:mod:`studentnas.distill.teacher_cache`);
* :func:`train_teacher`: ``studentnas teacher train``;
* :func:`distill`: ``studentnas distill RUN``, KD + hyper-parameter search on Ray Tune.

Example:
    >>> from studentnas.distill import LOSSES, TrainConfig
    >>> LOSSES.get("diswot_relation").__name__
    'DisWOTRelationLoss'
    >>> TrainConfig(epochs=3, losses=({"name": "kd", "weight": 0.9, "T": 4.0},)).needs_teacher
    True
"""

from studentnas.distill.batches import Batches
from studentnas.distill.evaluation import evaluate
from studentnas.distill.losses import LOSSES, DisWOTRelationLoss, DisWOTSemanticLoss
from studentnas.distill.teacher_cache import cached_teacher_logits
from studentnas.distill.teacher_train import train_teacher
from studentnas.distill.train_config import TrainConfig
from studentnas.distill.trainer import TrainResult, train
from studentnas.distill.tune import DistillResult, distill

__all__ = ["LOSSES", "Batches", "DisWOTRelationLoss", "DisWOTSemanticLoss", "DistillResult", "TrainConfig",
           "TrainResult", "cached_teacher_logits", "distill", "evaluate", "train", "train_teacher"]
