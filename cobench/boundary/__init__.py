"""``cobench boundary``: adaptive search for the eps (x beta) at which catastrophic overfitting sets in."""
