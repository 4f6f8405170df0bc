import os

# Offscreen rendering through Mesa's EGL, as in CI; set before anything imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")
