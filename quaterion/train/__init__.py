"""Training machinery: trainable model, encoder cache, cross-batch memory, callbacks."""
