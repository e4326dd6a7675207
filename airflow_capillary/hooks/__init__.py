"""Hooks of the Capillary provider."""
