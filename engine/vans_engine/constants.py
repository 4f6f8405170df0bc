"""Names shared by the models, the planner, the trainer and the checkpoint files."""

# Batch keys (LeRobot style): tensors in, tensors out.
FRAMES = "frames"  # (B, N + 1, 3, H, W) float in [-1, 1]: the current frame, then N later frames
ACTIONS = "actions"  # (B, N, action_dim): the action that led into each later frame
ACTION_MASK = "action_mask"  # (B, N) bool: False where the episode had ended
STATE = "observation.state"  # (B, state_dim): proprioception, ee_pos (3) + gripper opening (1)
# (B, N, O, 3): each of O objects' centre minus the tool point, in metres, before each action; a training
# target only (an auxiliary task of the action head), never an input
OBJECT_OFFSETS = "object_offsets"
# (B, O, 2): where the desk camera's current frame shows each of O objects, x right and y down with the
# image's edges at -1 and 1; a training target only (the action head's object keypoints)
OBJECT_IMAGE_XY = "object_image_xy"

# Checkpoint layout (diffusers style): one folder per component plus model_index.json.
MODEL_INDEX = "model_index.json"
EXPORTED_DIR = "exported"
