"""Packaging, launch files and parameters: launch_ros cannot be installed here, so the launch files
are parsed; every executable they name must be a console script, every parameter a declared one
documented in config/*.yaml. The console entry point starts from the venv with --params-file and
exits cleanly on SIGINT."""

import ast
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import Parameter

from vans_ros.parameters import ParameterError
from vans_ros.planner_node import PlannerNode
from vans_ros.sim_camera_node import SimCameraNode

PACKAGE = Path(__file__).resolve().parents[2] / "ros2_ws/src/vans_ros"
BIN = Path(sys.executable).parent
NODES = {"planner": PlannerNode, "sim_camera": SimCameraNode}
EXECUTABLES = {"vans-ros-planner": "planner", "vans-ros-sim-camera": "sim_camera"}


def console_scripts() -> dict[str, str]:
    tree = ast.parse((PACKAGE / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "console_scripts"
                                              for k in node.keys):
            scripts = ast.literal_eval(node.values[0])
            return dict(s.replace(" ", "").split("=") for s in scripts)
    raise AssertionError("no console_scripts in setup.py")


def yaml_parameters(name: str) -> dict:
    (section,) = yaml.safe_load((PACKAGE / "config" / f"{name}.yaml").read_text()).values()
    return section["ros__parameters"]


def calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == name]


def launch_arguments(path: Path) -> set[str]:
    return {ast.literal_eval(c.args[0]) for c in calls(ast.parse(path.read_text()), "DeclareLaunchArgument")}


def launch_nodes(path: Path) -> list[dict]:
    """The Node(...) calls of a launch file, and those of the launch files it includes: executable,
    name, parameter keys given inline, remappings."""
    tree = ast.parse(path.read_text())
    declared = launch_arguments(path)
    used = {ast.literal_eval(c.args[0]) for c in calls(tree, "LaunchConfiguration")}
    assert used <= declared, f"{path.name}: launch arguments used but not declared: {used - declared}"
    nodes = []
    for include in calls(tree, "IncludeLaunchDescription"):
        (source,) = calls(include, "PythonLaunchDescriptionSource")
        included = path.parent / ast.literal_eval(source.args[0].args[-1])  # os.path.join(share, "launch", NAME)
        passed = {ast.literal_eval(k) for k in
                  next(k.value for k in include.keywords if k.arg == "launch_arguments").func.value.keys}
        assert passed <= launch_arguments(included), f"{path.name} passes {passed - launch_arguments(included)}"
        nodes += launch_nodes(included)
    for call in calls(tree, "Node"):
        kw = {k.arg: k.value for k in call.keywords}
        params = [ast.literal_eval(k) for p in kw["parameters"].elts if isinstance(p, ast.Dict) for k in p.keys]
        remaps = [ast.literal_eval(t.elts[0]) for t in kw.get("remappings", ast.List(elts=[])).elts]
        nodes.append({"package": ast.literal_eval(kw["package"]), "executable": ast.literal_eval(kw["executable"]),
                      "name": ast.literal_eval(kw["name"]), "parameters": params, "remappings": remaps,
                      "params_file": any(isinstance(p, ast.Call) for p in kw["parameters"].elts)})
    return nodes


def declared(node_class) -> dict:
    return {spec.name: spec.default for spec in node_class.PARAMETERS}


@pytest.mark.parametrize("node", list(NODES))
def test_yaml_documents_exactly_the_declared_parameters_with_their_defaults(node):
    assert yaml_parameters(node) == declared(NODES[node])


@pytest.mark.parametrize("launch", ["planner.launch.py", "sim_demo.launch.py"])
def test_launch_file_names_real_executables_parameters_and_topics(launch):
    scripts = console_scripts()
    topics = {"planner": {"camera/image_raw", "camera/image_raw/compressed", "instruction"},
              "sim_camera": {"action_plan", "cmd"}}
    nodes = launch_nodes(PACKAGE / "launch" / launch)
    assert sorted(n["name"] for n in nodes) == {"planner.launch.py": ["planner"],
                                                "sim_demo.launch.py": ["planner", "sim_camera"]}[launch]
    for node in nodes:
        assert node["package"] == "vans_ros"
        assert node["executable"] in scripts, f"{launch}: no console script {node['executable']!r}"
        kind = EXECUTABLES[node["executable"]]
        assert node["name"] == kind
        assert set(node["parameters"]) <= set(declared(NODES[kind])) & set(yaml_parameters(kind))
        assert node["params_file"]
        assert set(node["remappings"]) <= topics[kind]
    compile((PACKAGE / "launch" / launch).read_text(), launch, "exec")


def test_package_xml_and_setup_agree():
    root = ET.parse(PACKAGE / "package.xml").getroot()
    assert root.findtext("name") == "vans_ros" and root.find("export/build_type").text == "ament_python"
    depends = {e.text for e in root.iter("exec_depend")}
    imported = set()
    for source in (PACKAGE / "vans_ros").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[-1] in ("msg", "srv"):
                imported.add(node.module.split(".")[0])
    assert imported <= depends, f"message packages imported but not in package.xml: {imported - depends}"
    assert {"rclpy", "launch", "launch_ros"} <= depends
    assert (PACKAGE / "resource" / "vans_ros").is_file()
    assert set(console_scripts()) == {"vans-ros-planner", "vans-ros-sim-camera", "vans-ros-demo"}
    for script in console_scripts():
        assert (BIN / script).is_file(), f"{script} is not installed in the venv"


@pytest.mark.parametrize("bad", [{"foxglove_port": 70000}, {"backend": "tpu"}, {"plan_period_s": -1.0},
                                 {"context_frames": 3}, {"device": "gpu"}, {"model_dir": "/nonexistent/checkpoint"}])
def test_bad_parameter_stops_the_node_naming_it(ros, tiny_model, bad):
    overrides = {"model_dir": str(tiny_model), **bad}
    with pytest.raises(ParameterError, match=next(iter(bad))):
        PlannerNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_help_lists_every_parameter():
    out = subprocess.run([BIN / "vans-ros-planner", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for spec in PlannerNode.PARAMETERS:
        assert spec.name in out.stdout


def test_entry_point_with_params_file_runs_and_stops_on_sigint(tiny_model):
    """The venv entry point takes --ros-args --params-file like ros2 run, and SIGINT ends it with 0."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [BIN / "vans-ros-planner", "--ros-args", "--params-file", PACKAGE / "config" / "planner.yaml",
         "-p", f"model_dir:={tiny_model}", "-p", "instruction:=push the red button", "-r", "__ns:=/ci"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline, seen = time.monotonic() + 120, ""
        while time.monotonic() < deadline and "planning with" not in seen:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            seen += line
        assert "planning with" in seen and "every 0.2 s" in seen, seen
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_bad_parameter_from_the_command_line_exits_with_a_message(tiny_model):
    out = subprocess.run([BIN / "vans-ros-planner", "--ros-args", "-p", "backend:=tpu",
                          "-p", f"model_dir:={tiny_model}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "parameter 'backend' must be one of" in out.stderr
