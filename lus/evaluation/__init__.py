"""End-to-end evaluation runs outside the DVC pipeline: fit, score and write a report in one call."""
