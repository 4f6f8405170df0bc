"""ROS 2 nodes for the vans planner: ``planner`` (camera in, foreseen video, caption and actions out),
``sim_camera`` (the vans_sim desk as a stand-in robot) and the closed-loop demo."""

__version__ = "0.1.0"
