"""Built-in feature injections (the paper's class-wise carriers and data transforms)."""
