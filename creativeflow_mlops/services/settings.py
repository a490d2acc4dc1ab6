"""Every setting of the addon: its ``ir.config_parameter`` key, type and
default, in one place. *Settings → MLOps* (``res.config.settings``) shows
them with these defaults; models, jobs and controllers read them through
``get``."""

from dataclasses import dataclass

PREFIX = "creativeflow_mlops."


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type
    default: object = None

    @property
    def key(self):
        return PREFIX + self.name


SETTINGS = {
    setting.name: setting
    for setting in (
        Setting("allow_self_approval", bool, False),
        Setting("approval_reason_optional", bool, False),
        Setting("default_approver_id", int, 0),
        Setting("trivy_path", str, None),
        Setting("content_safety_url", str, None),
        Setting("benchmark_runs", int, 50),
        Setting("runtime_memory_mb", int, 8192),
        # uploads through Odoo, and straight to S3 (S3's largest object)
        Setting("max_upload_gb", int, 20),
        Setting("max_direct_upload_gb", int, 5 * 1024),
        # a validation round with no job left to run is settled after this
        Setting("watchdog_grace_minutes", int, 2),
        # canary rollouts: the traffic steps, how long each is held, and the
        # gates read from the model server's metrics over each step
        Setting("canary_steps", str, "10,50,100"),
        Setting("canary_step_seconds", int, 60),
        Setting("canary_min_requests", int, 50),
        Setting("canary_max_error_rate", float, 0.05),
        Setting("canary_max_p95_ms", int, 500),
        Setting("canary_inconclusive_tries", int, 3),
        # how long the idle blue-green colour stays up for an instant switch back
        Setting("bluegreen_keep_minutes", int, 60),
        # a colour not ready this long after it was applied fails its run
        Setting("rollout_timeout_seconds", int, 900),
        # an external pipeline that says nothing this long fails its run
        Setting("pipeline_timeout_minutes", int, 60),
        # a pull or merge request not merged this long fails its run (gitops)
        Setting("review_deadline_hours", int, 72),
        # the event log (GET /events, the bus, webhooks) keeps this many days
        Setting("event_retention_days", int, 30),
        # outbound webhooks: private and loopback targets refused unless
        # allowed (SSRF); a hook failing this many attempts in a row is disabled
        Setting("webhook_allow_private", bool, False),
        Setting("webhook_max_failures", int, 10),
        # monitoring: minute buckets kept this long, then folded into hours;
        # hour buckets kept this many days
        Setting("metrics_minute_retention_hours", int, 48),
        Setting("metrics_retention_days", int, 90),
        # the inference log: the share of calls a new deployment's model
        # servers keep with what was asked and answered
        Setting("inference_log_rate", float, 0.01),
        # data drift (Evidently's defaults): a feature moved below this
        # p-value or past this distance; the data drifts when this share of
        # its features moved; a window past this many values is judged by
        # distances; calls read per window, and the fewest judged
        Setting("drift_p_value", float, 0.05),
        Setting("drift_distance", float, 0.1),
        Setting("drift_share", float, 0.5),
        Setting("drift_large_window", int, 1000),
        Setting("drift_max_rows", int, 10000),
        Setting("drift_min_rows", int, 100),
        Setting("drift_window_hours", int, 24),
        Setting("drift_max_features", int, 100),
    )
}


def default(name):
    return SETTINGS[name].default


def get(env, name):
    """The setting's value, typed, or its default when unset or unreadable."""
    setting = SETTINGS[name]
    raw = env["ir.config_parameter"].sudo().get_param(setting.key)
    if raw in (None, False, ""):
        return setting.default
    if setting.kind is bool:
        return str(raw).lower() not in ("0", "false", "no", "off")
    if setting.kind in (int, float):
        try:
            return setting.kind(raw)
        except (TypeError, ValueError):
            return setting.default
    return raw
