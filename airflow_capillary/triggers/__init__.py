"""Triggers of the Capillary provider."""
