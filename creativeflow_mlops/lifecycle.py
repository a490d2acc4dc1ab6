"""The lifecycle contract (docs/reference/lifecycle.md) as plain data.

Nothing here imports the ORM: models, controllers, jobs and tests read the
same tables, so a transition exists in exactly one place.
"""

from dataclasses import dataclass

# Who performs a transition. ``SYSTEM`` transitions are made by the platform
# itself (upload completion, validation jobs, the deployment engine) and need
# the superuser environment; the others name the group of the contract.
SYSTEM = "system"
USER = "creativeflow_mlops.group_mlops_user"
APPROVER = "creativeflow_mlops.group_mlops_approver"
MANAGER = "creativeflow_mlops.group_mlops_manager"


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    actor: str
    label: str
    # kind of approval recorded when the transition happens ('staging',
    # 'production', 'rollback'); None when the transition is no approval
    approval: str | None = None
    # the uploader of the version may not perform it
    separation_of_duties: bool = False


VERSION_STATES = [
    ("draft", "Draft"),
    ("validating", "Validating"),
    ("validation_failed", "Validation Failed"),
    ("validated", "Validated"),
    ("staging_pending", "Staging Pending"),
    ("staging", "Staging"),
    ("production_pending", "Production Pending"),
    ("production", "Production"),
    ("deprecated", "Deprecated"),
    ("archived", "Archived"),
]

VERSION_TRANSITIONS = (
    Transition("draft", "validating", SYSTEM, "Upload completed"),
    Transition("validating", "validated", SYSTEM, "Validation passed"),
    Transition("validating", "validation_failed", SYSTEM, "Validation failed"),
    Transition("validation_failed", "validating", MANAGER, "Re-validate"),
    Transition("validated", "validating", MANAGER, "Re-validate"),
    Transition(
        "validated",
        "staging_pending",
        APPROVER,
        "Approve staging",
        approval="staging",
        separation_of_duties=True,
    ),
    Transition("staging_pending", "staging", SYSTEM, "Staging deployment active"),
    Transition("staging_pending", "validated", SYSTEM, "Staging deployment failed"),
    Transition(
        "staging",
        "production_pending",
        APPROVER,
        "Promote",
        approval="production",
        separation_of_duties=True,
    ),
    Transition("production_pending", "production", SYSTEM, "Rollout finished"),
    Transition("production_pending", "staging", SYSTEM, "Rollout failed"),
    Transition("production", "deprecated", SYSTEM, "Replaced in production"),
    Transition(
        "deprecated",
        "production_pending",
        APPROVER,
        "Roll back to this version",
        approval="rollback",
    ),
) + tuple(
    Transition(state, "archived", MANAGER, "Archive")
    for state, _label in VERSION_STATES
    if state != "archived"
)

# States a version may be created in, and by whom: a backend form or an
# import starts in draft; the upload service stores the artifact first and
# creates the version straight in ``validating``.
VERSION_CREATE_STATES = {"draft": USER, "validating": SYSTEM}

DEPLOYMENT_STATES = [
    ("requested", "Requested"),
    ("deploying", "Deploying"),
    ("active", "Active"),
    ("inactive_bluegreen", "Idle Colour (Blue-Green)"),
    ("rolling_out_canary", "Canary Rollout"),
    ("failed", "Failed"),
    ("rolled_back", "Rolled Back"),
    ("deleted", "Deleted"),
]

# what reconciliation found of a deployment's objects on its target
DRIFT_STATES = [
    ("in_sync", "In Sync"),
    ("drifted", "Drifted"),
    ("missing", "Missing"),
    ("unknown", "Unknown"),
]

_DEPLOYMENT_MOVES = {
    "requested": ("deploying", "failed"),
    "deploying": ("active", "rolling_out_canary", "failed", "rolled_back"),
    "rolling_out_canary": ("active", "failed", "rolled_back"),
    "active": ("inactive_bluegreen", "rolled_back", "failed"),
    "inactive_bluegreen": ("active",),
}

DEPLOYMENT_TRANSITIONS = tuple(
    Transition(source, target, SYSTEM, target.replace("_", " ").capitalize())
    for source, targets in _DEPLOYMENT_MOVES.items()
    for target in targets
) + tuple(
    Transition(state, "deleted", APPROVER, "Undeploy")
    for state, _label in DEPLOYMENT_STATES
    if state != "deleted"
)

DEPLOYMENT_CREATE_STATES = {"requested": APPROVER}

PIPELINE_STATES = [
    ("queued", "Queued"),
    ("running", "Running"),
    # a pull or merge request awaits review (gitops targets)
    ("waiting", "Waiting for Review"),
    ("succeeded", "Succeeded"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]

PIPELINE_TRANSITIONS = tuple(
    Transition(source, target, SYSTEM, label)
    for source, target, label in (
        ("queued", "running", "Start"),
        ("queued", "failed", "Fail"),
        ("queued", "cancelled", "Cancel"),
        ("running", "succeeded", "Succeed"),
        ("running", "failed", "Fail"),
        ("running", "cancelled", "Cancel"),
        ("running", "waiting", "Wait for Review"),
        ("waiting", "running", "Resume"),
        ("waiting", "failed", "Fail"),
        ("waiting", "cancelled", "Cancel"),
    )
)

# a run not finished: one per model and environment at a time
PIPELINE_OPEN_STATES = ("queued", "running", "waiting")

PIPELINE_CREATE_STATES = {"queued": SYSTEM}

EXPERIMENT_STATES = [
    ("draft", "Draft"),
    ("running", "Running"),
    ("stopped", "Stopped"),
    ("concluded", "Concluded"),
]

EXPERIMENT_TRANSITIONS = (
    Transition("draft", "running", APPROVER, "Start"),
    # by hand, or by the platform at its end
    Transition("running", "stopped", APPROVER, "Stop"),
    Transition("stopped", "concluded", APPROVER, "Conclude"),
)

EXPERIMENT_CREATE_STATES = {"draft": APPROVER}

# an experiment's primary metric
EXPERIMENT_METRICS = [
    ("rating", "Feedback Rating"),
    ("error_rate", "Error Rate"),
    ("latency_p95", "Latency (p95)"),
    ("outcome", "Business Outcome"),
]

# in their order; a provider may skip some (saying why)
PIPELINE_STAGES = [
    ("fetch_artifact", "Fetch Artifact"),
    ("build_image", "Build Image"),
    ("push_image", "Push Image"),
    # gitops targets: the colour committed, the pull or merge request opened
    # (production), its merge awaited
    ("commit", "Commit"),
    ("open_change", "Open Pull Request"),
    ("await_merge", "Await Merge"),
    ("apply", "Apply"),
    ("verify", "Verify"),
    ("switch_traffic", "Switch Traffic"),
]

STAGE_STATES = [
    ("pending", "Pending"),
    ("running", "Running"),
    ("succeeded", "Succeeded"),
    ("failed", "Failed"),
    ("skipped", "Skipped"),
]

PIPELINE_PROVIDERS = [
    ("internal", "Internal (queued jobs)"),
    ("gitlab", "GitLab CI"),
    ("github", "GitHub Actions"),
    ("webhook", "Signed Webhook"),
]

VALIDATION_STATES = [
    ("pending", "Pending"),
    ("running", "Running"),
    ("passed", "Passed"),
    ("failed", "Failed"),
    ("warning", "Warning"),
    ("skipped", "Skipped"),
]

TASK_TYPES = [
    ("image_generation", "Image Generation"),
    ("text_generation", "Text Generation"),
    ("image_to_image", "Image to Image"),
    ("upscaling", "Upscaling"),
    ("style_transfer", "Style Transfer"),
    ("classification", "Classification"),
    ("object_detection", "Object Detection"),
    ("segmentation", "Segmentation"),
    ("embedding", "Embedding"),
    ("speech", "Speech"),
    ("other", "Other"),
]

MODEL_FORMATS = [
    ("onnx", "ONNX"),
    ("tensorflow_savedmodel", "TensorFlow SavedModel"),
    ("pytorch_torchscript", "PyTorch TorchScript"),
    ("safetensors", "safetensors"),
    ("pickle", "Pickle (scikit-learn, joblib)"),
    ("custom_python_container", "Custom Python Container"),
    ("other", "Other"),
]

INTERFACE_TYPES = [
    ("kserve_v2", "KServe v2 (Open Inference Protocol)"),
    ("tensorflow_serving", "TensorFlow Serving"),
    ("torchserve", "TorchServe"),
    ("triton_inference_server", "Triton Inference Server"),
    ("openai", "OpenAI-compatible"),
    ("custom_fastapi", "Custom FastAPI"),
    ("custom_flask", "Custom Flask"),
]

ENVIRONMENTS = [("staging", "Staging"), ("production", "Production")]
STRATEGIES = [
    ("rolling", "Rolling"),
    ("blue_green", "Blue-Green"),
    ("canary", "Canary"),
]


def find_transition(transitions, source, target):
    """Return the transition from ``source`` to ``target``, or None."""
    for transition in transitions:
        if transition.source == source and transition.target == target:
            return transition
    return None


def targets_from(transitions, source):
    """The states reachable from ``source`` in one step, in table order."""
    return [t.target for t in transitions if t.source == source]
