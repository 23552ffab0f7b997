"""Defaults of the cars example (upstream values for real data, small ones for ``--synthetic``)."""

TRAIN_BATCH_SIZE = 2048
IMAGE_SIZE = 336

DEFAULT_SEED = 42
DATASET_PATH = "./torchvision/datasets"
CACHE_DIR = "./cache_dir"
SPLIT_CACHE_PATH = "split_cache.pkl"
DEFAULT_ARCH = "resnet152"
ARCH_CHOICES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# Head dropout over pretrained features. Random-weight features (``--weights random``, the
# --synthetic default) differ between classes by far less than dropout's noise, which then
# drowns them (rrp_train about 0.01 against 0.97 without dropout), so they get none.
HEAD_DROPOUT = 0.1

# --synthetic: small enough that train + evaluate + serving finish in about two minutes on 2 CPU cores.
SYNTHETIC_IMAGE_SIZE = 64
SYNTHETIC_BATCH_SIZE = 128
SYNTHETIC_EPOCHS = 3
SYNTHETIC_IMAGES_PER_CLASS = 2  # per split, so every class has 4 images across train+test
