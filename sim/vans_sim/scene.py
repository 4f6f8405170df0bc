"""The desk scene: its layout constants and the MJCF model built from them.

Everything the experts and the task checks need to know about the geometry lives here, so that the
model, the success conditions and the scripted experts can never disagree about where a handle is.

Frame: z up, the desk top at ``DESK_TOP``; the camera stands in front of the desk (negative y)
looking down and back, as RoboDesk's does. Lengths are metres.
"""

from __future__ import annotations

import numpy as np

# --- Desk ---------------------------------------------------------------------------------------
DESK_TOP = 0.40
DESK_HALF = (0.40, 0.25)  # half extents in x and y
DESK_SLAB = 0.02  # half thickness of the top slab

# --- Gripper ------------------------------------------------------------------------------------
# The end-effector point (TCP) lies between the finger pads. Fingers reach FINGER_BELOW under it;
# the palm starts PALM_ABOVE over it.
FINGER_BELOW = 0.02
PALM_ABOVE = 0.05
FINGER_HALF = (0.008, 0.012, 0.035)  # half extents of one finger box
PALM_HALF = (0.075, 0.015, 0.015)
FINGER_MAX_OPEN = 0.06  # distance of each finger from the centre when fully open
EE_RANGE = ((-0.55, 0.75), (-0.45, 0.30), (0.22, 0.80))  # reachable TCP box, per axis
EE_MAX_STEP = 0.02  # metres moved per unit action per environment step

# --- Buttons (front left) -----------------------------------------------------------------------
BUTTON_RADIUS = 0.025
BUTTON_HEIGHT = 0.02  # cap height above the desk when released
BUTTON_TRAVEL = 0.012
BUTTON_PRESSED = 0.008  # depression that counts as pressed
BUTTONS = {
    "red": (-0.32, -0.19),
    "green": (-0.22, -0.19),
    "blue": (-0.12, -0.19),
}
BUTTON_RGBA = {"red": "0.85 0.1 0.1 1", "green": "0.1 0.7 0.15 1", "blue": "0.1 0.25 0.9 1"}

# --- Drawer (front right, under the top) ----------------------------------------------------------
DRAWER_X = 0.20
DRAWER_HALF = (0.12, 0.01, 0.05)  # front panel half extents
DRAWER_Z = DESK_TOP - 2 * DESK_SLAB - DRAWER_HALF[2] - 0.005
DRAWER_FRONT_Y = -DESK_HALF[1] - 2 * DRAWER_HALF[1]  # outer face of the closed front panel
DRAWER_TRAVEL = 0.16
DRAWER_OPEN = 0.08  # opening that counts as open
HANDLE_GAP = 0.05  # distance of the handle bar from the panel face
HANDLE_RADIUS = 0.008
HANDLE_HALF_LEN = 0.06

# --- Sliding panel on the back-right cabinet ------------------------------------------------------
CABINET_X = (0.05, 0.38)
CABINET_Y = (0.17, 0.25)
CABINET_HEIGHT = 0.12
SLIDE_HALF = (0.08, 0.006, 0.05)
SLIDE_X = 0.14  # panel centre when closed
SLIDE_Y = CABINET_Y[0] - SLIDE_HALF[1] - 0.002
SLIDE_TRAVEL = 0.16
SLIDE_OPEN = 0.10
KNOB_HALF = (0.012, 0.02, 0.02)
KNOB_Z = DESK_TOP + CABINET_HEIGHT / 2

# --- Shelf (back left): a raised tray with low lips ------------------------------------------------
SHELF_X = (-0.36, -0.12)
SHELF_Y = (0.14, 0.24)
SHELF_FLOOR = DESK_TOP + 0.06
SHELF_LIP = 0.02

# --- Bin (right of the desk, lower) -----------------------------------------------------------------
BIN_X = (0.47, 0.71)
BIN_Y = (-0.13, 0.13)
BIN_FLOOR = 0.22
BIN_WALL = 0.08

# --- Loose objects --------------------------------------------------------------------------------
UPRIGHT_HALF = (0.022, 0.022, 0.05)
FLAT_HALF = (0.03, 0.045, 0.015)
BALL_RADIUS = 0.028
OBJECTS = ("upright_block", "flat_block", "ball")
OBJECT_REST_Z = {
    "upright_block": DESK_TOP + UPRIGHT_HALF[2],
    "flat_block": DESK_TOP + FLAT_HALF[2],
    "ball": DESK_TOP + BALL_RADIUS,
}

# --- Camera ---------------------------------------------------------------------------------------
CAMERA_POS = np.array([0.16, -1.00, 1.22])
CAMERA_TARGET = np.array([0.16, -0.06, 0.30])
CAMERA_FOVY = 48.0
# A second camera beyond the desk's left end, looking along +x: the desk camera's depth axis (y) runs
# across its image and height up it, so two views together fix where the gripper is in all three
# axes. It frames the desk and the gripper's height above it (its highest reach near this end and
# the far corners of its reach, away from any task, leave the picture).
SIDE_CAMERA_POS = np.array([-1.20, -0.08, 0.98])
SIDE_CAMERA_TARGET = np.array([0.12, -0.08, 0.50])
# The cameras an environment can render, by the name a model's training data records.
CAMERAS = {"desk": "desk_camera", "side": "side_camera"}


def check_cameras(cameras) -> tuple[str, ...]:
    """``cameras`` as a tuple, or a ValueError that names the valid views."""
    cameras = tuple(cameras)
    if not cameras or any(c not in CAMERAS for c in cameras) or len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras must be distinct names from {tuple(CAMERAS)}, got {list(cameras)!r}")
    return cameras


# Side of the sun's shadow map when shadows are on. At a 64-pixel camera 256 draws the same shadow as
# 1024 at a third of the cost (a step renders at ~280 steps/s against ~540 without shadows, ~100 at 1024).
SHADOW_MAP_SIZE = 256

# Physics: one environment step is CONTROL_SUBSTEPS physics steps of TIMESTEP seconds.
TIMESTEP = 0.005
CONTROL_SUBSTEPS = 10
CONTROL_PERIOD = TIMESTEP * CONTROL_SUBSTEPS


def _camera_axes(pos: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit forward, right and up vectors of a camera at ``pos`` looking at ``target``, the world z up."""
    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return forward, right, np.cross(right, forward)


def _camera_xyaxes(pos: np.ndarray, target: np.ndarray) -> str:
    """MJCF ``xyaxes`` for a camera at ``pos`` looking at ``target`` with the world z up."""
    _, right, up = _camera_axes(pos, target)
    return " ".join(f"{v:.6f}" for v in (*right, *up))


def project_to_desk_image(points: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> where the desk camera's square image shows them, (..., 2): x to the
    right and y down, the image's edges at -1 and 1 (a pinhole of ``CAMERA_FOVY``, as MuJoCo renders
    it). Training uses it to tell a model where the objects are in the frame."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    forward, right, up = _camera_axes(CAMERA_POS, CAMERA_TARGET)
    offset = points - CAMERA_POS
    depth = offset @ forward
    scale = 1.0 / (np.tan(np.radians(CAMERA_FOVY) / 2) * depth)
    return np.stack([(offset @ right) * scale, -(offset @ up) * scale], axis=-1)


def _box(name: str, center, half, rgba: str, extra: str = "") -> str:
    c = " ".join(f"{v:.4f}" for v in center)
    h = " ".join(f"{v:.4f}" for v in half)
    return f'<geom name="{name}" type="box" pos="{c}" size="{h}" rgba="{rgba}" {extra}/>'


def _bin_geoms() -> str:
    x0, x1 = BIN_X
    y0, y1 = BIN_Y
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
    t = 0.008
    zf, zw = BIN_FLOOR, BIN_FLOOR + BIN_WALL / 2
    rgba = "0.35 0.35 0.4 1"
    return "\n".join([
        _box("bin_floor", (cx, cy, zf - t), (hx, hy, t), rgba),
        _box("bin_wall_left", (x0 - t, cy, zw), (t, hy + t, BIN_WALL / 2), rgba),
        _box("bin_wall_right", (x1 + t, cy, zw), (t, hy + t, BIN_WALL / 2), rgba),
        _box("bin_wall_front", (cx, y0 - t, zw), (hx, t, BIN_WALL / 2), rgba),
        _box("bin_wall_back", (cx, y1 + t, zw), (hx, t, BIN_WALL / 2), rgba),
        _box("bin_stand", (cx, cy, (zf - 2 * t) / 2), (0.03, 0.03, (zf - 2 * t) / 2), rgba),
    ])


def _shelf_geoms() -> str:
    x0, x1 = SHELF_X
    y0, y1 = SHELF_Y
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
    hz = (SHELF_FLOOR - DESK_TOP) / 2
    t = 0.006
    rgba = "0.55 0.4 0.25 1"
    lip_z = SHELF_FLOOR + SHELF_LIP / 2
    return "\n".join([
        _box("shelf_base", (cx, cy, DESK_TOP + hz), (hx, hy, hz), rgba),
        _box("shelf_lip_front", (cx, y0 + t, lip_z), (hx, t, SHELF_LIP / 2), rgba),
        _box("shelf_lip_back", (cx, y1 - t, lip_z), (hx, t, SHELF_LIP / 2), rgba),
        _box("shelf_lip_left", (x0 + t, cy, lip_z), (t, hy, SHELF_LIP / 2), rgba),
        _box("shelf_lip_right", (x1 - t, cy, lip_z), (t, hy, SHELF_LIP / 2), rgba),
    ])


def _button_bodies() -> str:
    bodies = []
    for colour, (x, y) in BUTTONS.items():
        bodies.append(f"""
    <body name="button_{colour}" pos="{x} {y} {DESK_TOP}">
      <joint name="button_{colour}" type="slide" axis="0 0 1" range="{-BUTTON_TRAVEL} 0"
             stiffness="300" damping="3" springref="0" limited="true"/>
      <geom name="button_{colour}" type="cylinder" pos="0 0 {BUTTON_HEIGHT / 2}"
            size="{BUTTON_RADIUS} {BUTTON_HEIGHT / 2}" rgba="{BUTTON_RGBA[colour]}" mass="0.05"/>
    </body>""")
    return "".join(bodies)


def build_mjcf(shadows: bool = False) -> str:
    """Return the MJCF XML of the desk scene.

    Multisampling is off and the scene has one light: under Mesa's software rasteriser those cost far
    more than the physics does. Shadows are off unless ``shadows`` is set; then the sun casts them onto
    the desk, which shows where the gripper is along the camera's line of sight (moving towards the
    camera and moving down look alike in a single view without them), for 2 to 2.5x the render cost.
    """
    top = DESK_TOP
    dx, dy = DESK_HALF
    cab_cx, cab_cy = sum(CABINET_X) / 2, sum(CABINET_Y) / 2
    cab_hx, cab_hy = (CABINET_X[1] - CABINET_X[0]) / 2, (CABINET_Y[1] - CABINET_Y[0]) / 2
    handle_y = -DRAWER_HALF[1] - HANDLE_GAP
    fhx, fhy, fhz = FINGER_HALF
    finger_z = (PALM_ABOVE - FINGER_BELOW) / 2
    ux, uy, uz = UPRIGHT_HALF
    return f"""
<mujoco model="vans_desk">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="4"/>
  <visual>
    <quality shadowsize="{SHADOW_MAP_SIZE if shadows else 0}" offsamples="0" numslices="12" numstacks="6" numquads="1"/>
    <global offwidth="256" offheight="256" fovy="{CAMERA_FOVY}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.2 0.2 0.2" specular="0 0 0"/>
  </visual>
  <default>
    <geom friction="1.0 0.01 0.001" solref="0.01 1" condim="3"/>
    <default class="static"><geom contype="1" conaffinity="1"/></default>
  </default>
  <worldbody>
    <light name="sun" directional="true" castshadow="{str(shadows).lower()}" pos="0 -0.5 2" dir="0.2 0.4 -1"
           diffuse="0.6 0.6 0.6" specular="0.1 0.1 0.1"/>
    <camera name="desk_camera" pos="{' '.join(f'{v:.4f}' for v in CAMERA_POS)}"
            xyaxes="{_camera_xyaxes(CAMERA_POS, CAMERA_TARGET)}" fovy="{CAMERA_FOVY}"/>
    <camera name="side_camera" pos="{' '.join(f'{v:.4f}' for v in SIDE_CAMERA_POS)}"
            xyaxes="{_camera_xyaxes(SIDE_CAMERA_POS, SIDE_CAMERA_TARGET)}" fovy="{CAMERA_FOVY}"/>
    <geom name="floor" type="plane" size="2 2 0.1" rgba="0.25 0.25 0.28 1"/>

    <body name="desk">
      {_box("desk_top", (0, 0, top - DESK_SLAB), (dx, dy, DESK_SLAB), "0.72 0.62 0.48 1")}
      {_box("desk_cabinet", (0, 0.01, (top - 2 * DESK_SLAB) / 2), (dx - 0.02, dy - 0.01, (top - 2 * DESK_SLAB) / 2), "0.5 0.42 0.32 1")}
      {_box("back_cabinet", (cab_cx, cab_cy, top + CABINET_HEIGHT / 2), (cab_hx, cab_hy, CABINET_HEIGHT / 2), "0.62 0.55 0.45 1")}
      {_shelf_geoms()}
    </body>
    {_bin_geoms()}
    {_button_bodies()}

    <body name="drawer" pos="{DRAWER_X} {-dy - DRAWER_HALF[1] - 0.001} {DRAWER_Z}">
      <joint name="drawer" type="slide" axis="0 -1 0" range="0 {DRAWER_TRAVEL}" damping="4"/>
      {_box("drawer_front", (0, 0, 0), DRAWER_HALF, "0.45 0.35 0.25 1", 'mass="0.5"')}
      {_box("drawer_tray", (0, DRAWER_HALF[1] + 0.09, -DRAWER_HALF[2] + 0.005), (DRAWER_HALF[0] - 0.01, 0.09, 0.005), "0.45 0.35 0.25 1", 'mass="0.2"')}
      <geom name="drawer_handle" type="capsule" fromto="{-HANDLE_HALF_LEN} {handle_y} 0 {HANDLE_HALF_LEN} {handle_y} 0"
            size="{HANDLE_RADIUS}" rgba="0.8 0.8 0.8 1" mass="0.05"/>
      {_box("drawer_handle_post_left", (-HANDLE_HALF_LEN, (handle_y - DRAWER_HALF[1]) / 2, 0), (0.006, HANDLE_GAP / 2, 0.006), "0.8 0.8 0.8 1", 'mass="0.01"')}
      {_box("drawer_handle_post_right", (HANDLE_HALF_LEN, (handle_y - DRAWER_HALF[1]) / 2, 0), (0.006, HANDLE_GAP / 2, 0.006), "0.8 0.8 0.8 1", 'mass="0.01"')}
    </body>

    <body name="slide" pos="{SLIDE_X} {SLIDE_Y} {top + CABINET_HEIGHT / 2}">
      <joint name="slide" type="slide" axis="1 0 0" range="0 {SLIDE_TRAVEL}" damping="4"/>
      {_box("slide_panel", (0, 0, 0), SLIDE_HALF, "0.85 0.8 0.6 1", 'mass="0.3"')}
      {_box("slide_knob", (0, -SLIDE_HALF[1] - KNOB_HALF[1], 0), KNOB_HALF, "0.3 0.3 0.3 1", 'mass="0.02"')}
    </body>

    <body name="upright_block" pos="0 0 {OBJECT_REST_Z['upright_block']}">
      <freejoint name="upright_block"/>
      <geom name="upright_block" type="box" size="{ux} {uy} {uz}" rgba="0.95 0.75 0.1 1" mass="0.1"/>
    </body>
    <body name="flat_block" pos="0 0 {OBJECT_REST_Z['flat_block']}">
      <freejoint name="flat_block"/>
      <geom name="flat_block" type="box" size="{' '.join(map(str, FLAT_HALF))}" rgba="0.6 0.2 0.75 1" mass="0.1"/>
    </body>
    <body name="ball" pos="0 0 {OBJECT_REST_Z['ball']}">
      <freejoint name="ball"/>
      <geom name="ball" type="sphere" size="{BALL_RADIUS}" rgba="0.95 0.45 0.1 1" mass="0.05"
            condim="6" friction="1.0 0.01 0.002"/>
    </body>

    <body name="gripper_x" gravcomp="1">
      <inertial pos="0 0 0" mass="0.5" diaginertia="0.001 0.001 0.001"/>
      <joint name="ee_x" type="slide" axis="1 0 0" range="{EE_RANGE[0][0]} {EE_RANGE[0][1]}" damping="60"/>
      <body name="gripper_y" gravcomp="1">
        <inertial pos="0 0 0" mass="0.5" diaginertia="0.001 0.001 0.001"/>
        <joint name="ee_y" type="slide" axis="0 1 0" range="{EE_RANGE[1][0]} {EE_RANGE[1][1]}" damping="60"/>
        <body name="gripper" gravcomp="1">
          <joint name="ee_z" type="slide" axis="0 0 1" range="{EE_RANGE[2][0]} {EE_RANGE[2][1]}" damping="60"/>
          <site name="tcp" pos="0 0 0" size="0.005"/>
          {_box("palm", (0, 0, PALM_ABOVE + 0.015), PALM_HALF, "0.2 0.2 0.22 1", 'mass="0.3"')}
          <geom name="wrist" type="cylinder" pos="0 0 {PALM_ABOVE + 0.08}" size="0.018 0.05" rgba="0.3 0.3 0.32 1" mass="0.1"/>
          <body name="finger_left" pos="0 0 {finger_z}" gravcomp="1">
            <joint name="finger_left" type="slide" axis="-1 0 0" range="0 {FINGER_MAX_OPEN}" damping="5"/>
            {_box("finger_left", (-fhx, 0, 0), FINGER_HALF, "0.75 0.75 0.78 1", 'mass="0.05" friction="1.5 0.02 0.001" condim="4"')}
          </body>
          <body name="finger_right" pos="0 0 {finger_z}" gravcomp="1">
            <joint name="finger_right" type="slide" axis="1 0 0" range="0 {FINGER_MAX_OPEN}" damping="5"/>
            {_box("finger_right", (fhx, 0, 0), FINGER_HALF, "0.75 0.75 0.78 1", 'mass="0.05" friction="1.5 0.02 0.001" condim="4"')}
          </body>
        </body>
      </body>
    </body>
  </worldbody>

  <contact>
    <exclude body1="desk" body2="drawer"/>
    <exclude body1="desk" body2="slide"/>
    <exclude body1="gripper" body2="finger_left"/>
    <exclude body1="gripper" body2="finger_right"/>
    <exclude body1="finger_left" body2="finger_right"/>
    <exclude body1="desk" body2="button_red"/>
    <exclude body1="desk" body2="button_green"/>
    <exclude body1="desk" body2="button_blue"/>
  </contact>

  <actuator>
    <position name="ee_x" joint="ee_x" kp="2500" forcerange="-150 150"/>
    <position name="ee_y" joint="ee_y" kp="2500" forcerange="-150 150"/>
    <position name="ee_z" joint="ee_z" kp="2500" forcerange="-150 150"/>
    <position name="finger_left" joint="finger_left" kp="400" forcerange="-15 15" ctrlrange="0 {FINGER_MAX_OPEN}"/>
    <position name="finger_right" joint="finger_right" kp="400" forcerange="-15 15" ctrlrange="0 {FINGER_MAX_OPEN}"/>
  </actuator>
</mujoco>
"""
