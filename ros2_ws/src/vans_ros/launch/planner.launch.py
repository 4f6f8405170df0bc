"""The planner node with its parameters file, and the camera and instruction topics remapped.

    ros2 launch vans_ros planner.launch.py
    ros2 launch vans_ros planner.launch.py camera_topic:=/wrist_camera/image_raw model_dir:=/path/to/checkpoint
    ros2 launch vans_ros planner.launch.py namespace:=arm foxglove_port:=8765

Written for ROS 2 Jazzy and Kilted (launch, launch_ros).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("vans_ros")
    launch_args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "planner.yaml"),
                              description="parameters file of the planner node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the planner node"),
        DeclareLaunchArgument("camera_topic", default_value="camera/image_raw",
                              description="sensor_msgs/Image topic of the camera"),
        DeclareLaunchArgument("instruction_topic", default_value="instruction",
                              description="std_msgs/String topic of the instruction"),
        DeclareLaunchArgument("model_dir", default_value="",
                              description="checkpoint folder; empty = the shipped models/vans-desk-64"),
        DeclareLaunchArgument("backend", default_value="onnxruntime",
                              description="onnxruntime, torch or tensorrt"),
        DeclareLaunchArgument("foxglove_port", default_value="0",
                              description="Foxglove WebSocket live view port; 0 = off"),
    ]
    planner = Node(
        package="vans_ros",
        executable="vans-ros-planner",
        name="planner",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model_dir": ParameterValue(LaunchConfiguration("model_dir"), value_type=str),
                "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
                "foxglove_port": ParameterValue(LaunchConfiguration("foxglove_port"), value_type=int),
            },
        ],
        remappings=[
            ("camera/image_raw", LaunchConfiguration("camera_topic")),
            ("camera/image_raw/compressed", [LaunchConfiguration("camera_topic"), "/compressed"]),
            ("instruction", LaunchConfiguration("instruction_topic")),
        ],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription(launch_args + [planner])
