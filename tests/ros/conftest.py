import os
import random
import threading
import time

import pytest

# A domain of our own per test session: parallel runs on one machine (CI, a developer's shell) must
# not hear each other's topics. Set before rclpy creates its context.
os.environ["ROS_DOMAIN_ID"] = str(random.Random().randint(1, 101))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random checkpoint, exported to ONNX once for the session."""
    from vans_engine.planner import Planner
    from vans_engine.testing import tiny_checkpoint

    folder = tiny_checkpoint(tmp_path_factory.mktemp("ros") / "tiny")
    Planner.from_pretrained(folder, backend="onnxruntime")  # writes exported/*.onnx once
    return folder


@pytest.fixture(scope="session")
def tiny_state_model(tmp_path_factory):
    """The same, with an IDM that reads proprioception (from ``joint_states``)."""
    from vans_engine.planner import Planner
    from vans_engine.testing import tiny_checkpoint

    folder = tiny_checkpoint(tmp_path_factory.mktemp("ros_state") / "tiny", idm_state=True)
    Planner.from_pretrained(folder, backend="onnxruntime")
    return folder


@pytest.fixture(scope="session")
def tiny_two_camera_model(tmp_path_factory):
    """The same, drawing and reading the desk and side views side by side (64x128 frames)."""
    from vans_engine.planner import Planner, PlannerConfig
    from vans_engine.testing import tiny_checkpoint

    folder = tiny_checkpoint(tmp_path_factory.mktemp("ros_two_cameras") / "tiny",
                             config=PlannerConfig(cameras=("desk", "side")))
    Planner.from_pretrained(folder, backend="onnxruntime")
    return folder


@pytest.fixture(scope="session")
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


class Spinner:
    """Nodes spun on a background executor; ``wait_for`` polls a condition from the test thread.

    One executor thread, as the nodes' entry points use: the sim camera renders with MuJoCo, whose
    GL context must stay on one thread.
    """

    def __init__(self):
        self.executor = SingleThreadedExecutor()
        self.nodes = []
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def close(self):
        for node in reversed(self.nodes):
            if hasattr(node, "close"):  # on the executor's thread, where the nodes' resources were made
                task = self.executor.create_task(node.close)
                wait_for(task.done, what=f"{node.get_name()} to close")
                task.result()
        # The spin thread stops before any node is destroyed: a callback it already took would
        # otherwise publish on a destroyed handle.
        self.executor.shutdown(timeout_sec=5)
        self._thread.join(timeout=5)
        for node in reversed(self.nodes):
            self.executor.remove_node(node)
            node.destroy_node()


def wait_for(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def spinner(ros):
    s = Spinner()
    yield s
    s.close()
