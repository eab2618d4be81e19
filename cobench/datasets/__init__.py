"""Built-in datasets: the embedded default and torchvision's standard sets."""
