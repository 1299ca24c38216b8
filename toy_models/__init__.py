"""Toy transformers that really train: pretraining, RL and SFT fine-tuning under storage precisions."""
