import os

# Offscreen rendering through Mesa's EGL, as in CI; set before anything imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")
# No model weights or data sets are ever downloaded: fail instead of reaching for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
