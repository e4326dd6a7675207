"""Sensors of the Capillary provider."""
