"""The settings of a study: everything that shapes its numbers, and the one training recipe derived from them.

:class:`Settings` is the search-quality study's identity (a rerun in the same folder must match it) and
what the training worker reads (the KD-vs-CE study fills the fields the worker needs).

Example:
    >>> s = Settings(**QUICK, quick=True)
    >>> s.epochs, s.input_size, s.train_config(0, "ce").ce_weight, len(s.train_config(0).losses)
    (2, (3, 32, 32), 1.0, 1)
    >>> budget_texts("25%macs, 2Mparams")
    ['25%macs', '2Mparams']
"""

from __future__ import annotations

from dataclasses import dataclass

from studentnas.distill.train_config import TrainConfig

MODES = ("kd", "ce")  # a training with the KD recipe, or the same recipe with CE only


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the numbers (a rerun in the same --out must match; see ``IDENTITY_SKIP``)."""

    teacher: str = "resnet34"
    teacher_checkpoint: str | None = None
    data: str = "fashion-mnist"
    image_size: int = 32
    teacher_epochs: int = 4
    teacher_train_images: int = 12000
    budget: str = "25%macs"
    space: str = "resnet"
    classic_proxy: str = "meco"
    searcher: str = "evolution"
    candidates: int = 150
    calibration_batch: int = 16
    params_samples: int = 50000
    random_students: int = 4
    seeds: int = 3
    epochs: int = 6
    train_images: int = 8000
    test_images: int | None = None  # None: the whole test split
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    temperature: float = 4.0
    kd_weight: float = 0.9
    ce_weight: float = 0.1
    seed: int = 0
    quick: bool = False

    def train_config(self, seed: int, mode: str = "kd") -> TrainConfig:
        """The one distillation recipe every student gets (``kd``), or its CE-only twin (``ce``: no KD
        term, CE weight 1; everything else equal)."""
        if mode == "ce":
            return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                               weight_decay=self.weight_decay, ce_weight=1.0, seed=seed, losses=())
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           weight_decay=self.weight_decay, ce_weight=self.ce_weight, seed=seed,
                           losses=({"name": "kd", "weight": self.kd_weight, "T": self.temperature},))

    @property
    def input_size(self) -> tuple[int, int, int]:
        """The students' and the teacher's input: 3 channels at ``image_size`` px."""
        return (3, self.image_size, self.image_size)


# --quick: a 2-3 minute smoke configuration; explicit flags still override it.
QUICK = {"teacher_epochs": 1, "teacher_train_images": 3000, "candidates": 12, "params_samples": 5000,
         "random_students": 2, "epochs": 2, "train_images": 1500, "test_images": 2000}
IDENTITY_SKIP = ()  # every Settings field must match on resume; --jobs/--threads/--out/--quiet are not settings


def budget_texts(text: str) -> list[str]:
    """The budget strings of a comma-separated ``--budget``."""
    return [t.strip() for t in text.split(",") if t.strip()]
