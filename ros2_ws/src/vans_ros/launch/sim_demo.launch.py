"""The sim camera (vans_sim as a stand-in robot) and the planner in closed loop.

    ros2 launch vans_ros sim_demo.launch.py
    ros2 launch vans_ros sim_demo.launch.py task:=open_drawer foxglove_port:=8765

The sim camera publishes camera/image_raw and the task's instruction, and executes the planner's
~/action_plan; the planner comes from planner.launch.py. Written for ROS 2 Jazzy and Kilted (launch, launch_ros).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("vans_ros")
    launch_args = [
        DeclareLaunchArgument("planner_params_file", default_value=os.path.join(share, "config", "planner.yaml"),
                              description="parameters file of the planner node"),
        DeclareLaunchArgument("sim_params_file", default_value=os.path.join(share, "config", "sim_camera.yaml"),
                              description="parameters file of the sim_camera node"),
        DeclareLaunchArgument("task", default_value="push_red", description="vans_sim task"),
        DeclareLaunchArgument("model_dir", default_value="",
                              description="checkpoint folder; empty = the shipped models/vans-desk-64"),
        DeclareLaunchArgument("foxglove_port", default_value="0",
                              description="Foxglove WebSocket live view port; 0 = off"),
    ]
    sim_camera = Node(
        package="vans_ros",
        executable="vans-ros-sim-camera",
        name="sim_camera",
        parameters=[
            LaunchConfiguration("sim_params_file"),
            {"task": ParameterValue(LaunchConfiguration("task"), value_type=str)},
        ],
        remappings=[("action_plan", "/planner/action_plan")],
        output="screen",
        emulate_tty=True,
    )
    planner = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "planner.launch.py")),
        launch_arguments={
            "params_file": LaunchConfiguration("planner_params_file"),
            "model_dir": LaunchConfiguration("model_dir"),
            "foxglove_port": LaunchConfiguration("foxglove_port"),
        }.items(),
    )
    return LaunchDescription(launch_args + [sim_camera, planner])
