"""Defaults of the cifar100 examples (light: the command-line help imports only this)."""

import os

DATASET_PATH = os.path.join(os.path.expanduser("~"), "torchvision", "datasets")
SYNTHETIC_TRAIN_SIZE = 2000
SYNTHETIC_EPOCHS = 3
