"""Distillation: the losses of the final KD stage (and, later, the trainer and the Ray Tune driver).

Example:
    >>> from studentnas.distill import LOSSES
    >>> LOSSES.get("diswot_relation").__name__
    'DisWOTRelationLoss'
"""

from studentnas.distill.losses import LOSSES, DisWOTRelationLoss, DisWOTSemanticLoss

__all__ = ["LOSSES", "DisWOTRelationLoss", "DisWOTSemanticLoss"]
