from glob import glob

from setuptools import find_packages, setup

package_name = "vans_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "benchmarks"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.json")),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
    ],
    # On a ROS install, rclpy and the messages come from the distribution (package.xml, rosdep); in a
    # plain venv the [venv] extra brings them from pip as wheels (rclpy with Fast DDS).
    install_requires=["setuptools", "numpy", "pillow", "imageio", "foxglove-sdk", "vans-engine", "vans-sim"],
    extras_require={"venv": ["ros-rclpy", "ros-rmw-fastrtps-cpp", "ros-sensor-msgs", "ros-std-msgs",
                             "ros-diagnostic-msgs", "ros-geometry-msgs", "ros-trajectory-msgs", "ros-std-srvs"],
                    "test": ["pytest", "hypothesis", "mcap", "websockets", "psutil"]},
    zip_safe=True,
    maintainer="vans_ros maintainers",
    maintainer_email="vans-ros@example.org",
    description="ROS 2 planner node: camera in, foreseen video, next-event caption and action plan out",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vans-ros-planner = vans_ros.planner_node:main",
            "vans-ros-sim-camera = vans_ros.sim_camera_node:main",
            "vans-ros-demo = vans_ros.demo:main",
        ],
    },
)
