# The two set-up commands of the README: `make demo` and `make test`. Both create .venv and install
# everything first; running them again installs nothing new.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
# Nothing is ever downloaded at run time: every model is built here or shipped in a package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): constraints.txt sim/pyproject.toml engine/pyproject.toml training/pyproject.toml scripts/install_system_deps.sh \
		ros2_ws/src/vans_ros/setup.py
	scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and alone, pinned: the CPU build on this machine's disk, never a CUDA download.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e sim -e engine -e training pytest \
		-e 'ros2_ws/src/vans_ros[venv,test]'
	touch $(STAMP)

# The ROS 2 closed loop: sim camera + planner over rclpy/Fast DDS, on models/vans-desk-64 when it is
# shipped, otherwise on a tiny untrained checkpoint (the report says so at the top).
demo: setup
	$(BIN)/vans-ros-demo --episodes 3 --out outputs/demo

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python sim/benchmarks/bench_sim.py --out benchmarks/results/sim.json
	$(BIN)/python engine/benchmarks/bench_planner.py --device cpu --out benchmarks/results/planner_cpu.json
	$(BIN)/python ros2_ws/src/vans_ros/benchmarks/bench_node.py --out benchmarks/results/ros_node_cpu.json
	$(BIN)/python training/benchmarks/bench_distilled.py --out benchmarks/results/distilled_vs_teacher_cpu.json

clean:
	rm -rf $(VENV) outputs
