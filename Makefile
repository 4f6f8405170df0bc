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

$(STAMP): constraints.txt sim/pyproject.toml engine/pyproject.toml scripts/install_system_deps.sh ros2_ws/src/vans_ros/setup.py
	scripts/install_system_deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and alone, pinned: the CPU build on this machine's disk, never a CUDA download.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e sim -e engine pytest -e 'ros2_ws/src/vans_ros[venv,test]'
	touch $(STAMP)

demo: setup
	$(BIN)/vans-sim score --policy expert --tasks push_red,open_drawer,ball_in_shelf,stack,open_drawer_then_push_red \
		--episodes 10 --split heldout --image-size 128 --num-envs 2 --out outputs/demo
	@echo "demo report: outputs/demo/report.md (video: outputs/demo/rollouts.gif)"

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python sim/benchmarks/bench_sim.py --out benchmarks/results/sim.json
	$(BIN)/python engine/benchmarks/bench_planner.py --device cpu --out benchmarks/results/planner_cpu.json

clean:
	rm -rf $(VENV) outputs
