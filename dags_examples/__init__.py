"""Example DAGs of the Capillary provider (a package only so that mypy names them)."""
