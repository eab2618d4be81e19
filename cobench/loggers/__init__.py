"""Built-in run loggers (``--loggers``): TensorBoard and MLflow, both optional extras."""
