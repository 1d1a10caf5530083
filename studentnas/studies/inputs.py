"""What every training of a study reads, loaded once per process: the image subsets, the teacher and its
cached logits on the training subset.

The caches matter in the worker processes, where one process trains several (student, seed) pairs.

Example:
    >>> train_set, test_set = datasets(None, 40, 20, 0)  # the calibration sample shipped in the package
    >>> len(train_set), len(test_set), datasets(None, 40, 20, 0)[0] is train_set
    (40, 20, True)
"""

from __future__ import annotations

from functools import lru_cache

import torch

from studentnas.data.images import ImageSet, load_images
from studentnas.data.teachers import Teacher, load_teacher
from studentnas.distill.batches import Batches
from studentnas.distill.teacher_cache import cached_teacher_logits
from studentnas.studies.settings import Settings


@lru_cache(maxsize=4)
def datasets(data: str | None, train_images: int, test_images: int | None, seed: int) -> tuple[ImageSet, ImageSet]:
    """The stratified training subset and the test subset (``test_images`` None: the whole split) of ``data``."""
    return (load_images(data, "train", limit=train_images, seed=seed),
            load_images(data, "test", limit=test_images, seed=seed))


@lru_cache(maxsize=2)
def cached_teacher(name: str, checkpoint: str) -> Teacher:
    """The teacher ``name`` with the weights of ``checkpoint`` (loaded once per process)."""
    return load_teacher(name, checkpoint)


def teacher_logits(s: Settings, checkpoint: str, cache: str) -> torch.Tensor:
    """The teacher's logits on the students' training subset, computed once into the folder ``cache``."""
    teacher = cached_teacher(s.teacher, checkpoint)
    train_set, _ = datasets(s.data, s.train_images, s.test_images, s.seed)
    batches = Batches(train_set, s.input_size, teacher.mean, teacher.std, 256)
    logits, _ = cached_teacher_logits(teacher.model, batches, cache, teacher_id=teacher.checkpoint_sha256,
                                      data_spec=s.data)
    return logits
