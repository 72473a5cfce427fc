"""Physics-informed neural networks: PDE problems with trustworthy references, trained full batch."""
