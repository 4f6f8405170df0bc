"""Training of the vans_ros planner's components, their evaluation, and the `vans-train` CLI."""

__version__ = "0.1.0"
