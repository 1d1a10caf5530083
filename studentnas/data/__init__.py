"""Data and teachers: image sets from specs (Fashion-MNIST, CIFAR, ImageFolder, the shipped sample), timm teachers.

May import: ``core``, ``runfiles``.
"""
