"""quaterion: fine-tuning framework for similarity learning (training side)."""
