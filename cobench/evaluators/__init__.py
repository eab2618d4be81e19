"""Built-in evaluators: accuracies under attack and catastrophic-overfitting detection."""
