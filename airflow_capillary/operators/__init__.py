"""Operators of the Capillary provider."""
