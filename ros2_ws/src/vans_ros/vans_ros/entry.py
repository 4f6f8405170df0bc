"""``main()`` for the console entry points, in the shape of demo_nodes_py's talker."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.utilities import remove_ros_args

from vans_ros.parameters import ParameterError, help_text


def spin_node(node_class, executable: str, args=None) -> int:
    """Build ``node_class()`` and spin it until SIGINT; ``--help`` prints its parameters.

    A bad parameter or model stops the node at startup with one line naming it, and exit code 2.
    """
    argv = sys.argv if args is None else args
    if {"-h", "--help"} & set(remove_ros_args(argv)[1:]):
        print(help_text(executable, node_class.PARAMETERS))
        return 0
    try:
        with rclpy.init(args=args):
            node = node_class()
            try:
                rclpy.spin(node)
            finally:
                node.close()
                node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ParameterError as e:
        print(f"{executable}: {e}", file=sys.stderr)
        return 2
    return 0
