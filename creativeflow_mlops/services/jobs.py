"""Small helpers for the queued jobs."""


def is_last_attempt(env):
    """Whether the queue_job running now (``job_uuid`` in the context) has no
    retry left: then a transient failure must settle what the job was for
    instead of asking to be retried."""
    uuid = env.context.get("job_uuid")
    if not uuid:
        return False
    job = env["queue.job"].sudo().search([("uuid", "=", uuid)], limit=1)
    return bool(job.max_retries) and job.retry + 1 >= job.max_retries
