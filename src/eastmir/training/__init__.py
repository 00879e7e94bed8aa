"""Training: the LightningModule, its data module, the Trainer set-up and checkpoints."""
