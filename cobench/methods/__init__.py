"""Built-in adversarial-training methods, one module (and one entry point) each."""
