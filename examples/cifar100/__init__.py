"""Metric learning on CIFAR-100 with a trainable MobileNetV3 (no cache): triplet, PML ArcFace and XBM variants."""
