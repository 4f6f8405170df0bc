"""vans_engine: the planner that answers "what happens next?" with a caption, a video and actions."""

__version__ = "0.1.0"
