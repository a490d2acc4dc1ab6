"""The registry's hot reads, each answer built by one SQL statement.

``GET /versions/<id>`` and ``GET /models/<id>/versions`` are what scripts
and n8n poll. Read through the ORM, an answer costs one query per model it
touches (the version, its model, users, validations, deployments) and the
ORM's work on each; here PostgreSQL builds the answer's JSON in the
statement that finds the records through the caller's rules, so a version
is one query and a page of versions two.

The rights are the same as the ORM's: the caller's access rights on every
model the answer reads are checked first (``check_access``), and the
records asked for are found by ``_search``, which applies the caller's
record rules (companies). Records related to a found version (its model,
validations, deployments) carry its company (stored related fields), so
they are read without rules again, as ``operations.readable_tree`` reads
them. The JSON is the same, key for key, as ``serializers.version``: a
test compares the two over versions in every shape.

Related rows are read by scalar subqueries rather than joins. PostgreSQL
plans each statement on every call (Odoo's pool runs ``DISCARD ALL`` when it
lends a connection, so neither a prepared statement nor a PL/pgSQL
function's plans survive), and planning three joins took 0.2 ms, longer
than running the whole statement; a subquery on a primary key is planned in
microseconds.
"""

from odoo.tools import SQL


def _timestamp(column):
    """``serializers.timestamp`` in SQL: ISO 8601 UTC, the microseconds only
    when there are some (as ``datetime.isoformat``), then ``Z``."""
    return SQL(
        """CASE WHEN %(c)s IS NULL THEN NULL ELSE
             to_char(%(c)s, 'YYYY-MM-DD"T"HH24:MI:SS')
             || CASE WHEN mod(date_part('microseconds', %(c)s)::bigint, 1000000) = 0
                     THEN '' ELSE to_char(%(c)s, '.US') END
             || 'Z' END""",
        c=column,
    )


def _text(column):
    """``value or None`` of a Char or Text field."""
    return SQL("NULLIF(%s, '')", column)


def _json(column, empty):
    """``value or empty`` of a Json field (``empty``: SQL, ``'{}'`` or NULL):
    JSON's falsy values (null, false, 0, "", [], {}) become ``empty``."""
    return SQL(
        """CASE WHEN %(c)s IS NULL
                  OR %(c)s IN ('null', 'false', '0', '""', '[]', '{}')
             THEN %(e)s ELSE %(c)s END""",
        c=column,
        e=empty,
    )


def _selection(column):
    """A Selection field's key, ``false`` when it has none (as the ORM)."""
    return SQL("COALESCE(to_jsonb(%s), 'false'::jsonb)", column)


# the versions' table, as the ORM's queries name it
V = SQL.identifier("mlops_model_version")

# the keys of ``serializers.version``, for ``json_build_object``
VERSION = SQL(
    """'id', %(v)s.id,
        'model_id', %(v)s.model_id,
        'model', (SELECT m.name FROM mlops_model m WHERE m.id = %(v)s.model_id),
        'version', %(v)s.version,
        'state', %(state)s,
        'model_format', %(model_format)s,
        'interface_type', %(interface_type)s,
        'description', %(description)s,
        'artifact', json_build_object(
            'uri', %(uri)s,
            'sha256', %(sha256)s,
            'size', NULLIF(%(v)s.artifact_size, 0),
            'filename', %(filename)s,
            'download_url', CASE WHEN COALESCE(%(v)s.artifact_object_key, '') = ''
                THEN NULL ELSE '/mlops/artifacts/' || %(v)s.id || '/download' END,
            'verified_at', %(verified_at)s
        ),
        'parameters', %(parameters)s,
        'metrics', %(metrics)s,
        'signature', json_build_object(
            'inputs', %(inputs)s,
            'outputs', %(outputs)s
        ),
        'lineage', json_build_object(
            'source_run', %(source_run)s,
            'dataset', %(dataset)s,
            'git_commit', %(git_commit)s,
            'parent_version', %(parent)s,
            'feedback_export', %(v)s.feedback_export_id
        ),
        'created_by', %(created_by)s,
        'created_at', %(created_at)s""",
    v=V,
    state=_selection(SQL("%s.state", V)),
    model_format=_selection(SQL("%s.model_format", V)),
    interface_type=_selection(SQL("%s.interface_type", V)),
    description=_text(SQL("%s.description", V)),
    uri=_text(SQL("%s.artifact_uri", V)),
    sha256=_text(SQL("%s.artifact_sha256", V)),
    filename=_text(SQL("%s.artifact_filename", V)),
    verified_at=_timestamp(SQL("%s.artifact_verified_at", V)),
    parameters=_json(SQL("%s.parameters", V), SQL("'{}'::jsonb")),
    metrics=_json(SQL("%s.metrics", V), SQL("'{}'::jsonb")),
    inputs=_json(SQL("%s.input_schema", V), SQL("NULL")),
    outputs=_json(SQL("%s.output_schema", V), SQL("NULL")),
    source_run=_text(SQL("%s.source_run", V)),
    dataset=_text(SQL("%s.dataset", V)),
    git_commit=_text(SQL("%s.git_commit", V)),
    parent=_text(
        SQL(
            "(SELECT p.version FROM mlops_model_version p"
            " WHERE p.id = %s.parent_version_id)",
            V,
        )
    ),
    created_by=_text(
        SQL("(SELECT u.login FROM res_users u WHERE u.id = %s.uploaded_by_id)", V)
    ),
    created_at=_timestamp(SQL("%s.create_date", V)),
)

# a version's validations (``_order``: round desc, id) and deployments (id
# desc), as ``serializers.validation`` and ``serializers.deployment``
CHILDREN = SQL(
    """'validations', COALESCE((
            SELECT json_agg(json_build_object(
                'id', r.id,
                'scan_type', %(scan_type)s,
                'state', %(result_state)s,
                'blocking', COALESCE(r.blocking, false),
                'round', COALESCE(r.round, 0),
                'summary', %(summary)s,
                'report_uri', %(report_uri)s,
                'started_at', %(started_at)s,
                'finished_at', %(finished_at)s
            ) ORDER BY r.round DESC, r.id)
            FROM mlops_validation_result r WHERE r.version_id = %(v)s.id
        ), '[]'),
        'deployments', COALESCE((
            SELECT json_agg(json_build_object(
                'id', d.id,
                'version_id', %(v)s.id,
                'version', %(v)s.version,
                'environment', %(environment)s,
                'strategy', %(strategy)s,
                'state', %(deployment_state)s,
                'replicas', COALESCE(d.replicas, 0),
                'resources', json_strip_nulls(json_build_object(
                    'gpu', NULLIF(d.gpu, 0),
                    'gpu_type', NULLIF(d.gpu_type, ''),
                    'cpu', NULLIF(d.cpu, ''),
                    'memory', NULLIF(d.memory, '')
                )),
                'traffic_percent', COALESCE(d.traffic_percent, 0),
                'endpoint_url', %(endpoint_url)s,
                'target', %(target)s,
                'message', %(message)s,
                'drift', %(drift)s,
                'drift_detail', %(drift_detail)s,
                'image', %(image)s,
                'created_at', %(deployed_at)s
            ) ORDER BY d.id DESC)
            FROM mlops_deployment d WHERE d.version_id = %(v)s.id
        ), '[]')""",
    v=V,
    scan_type=_selection(SQL("r.scan_type")),
    result_state=_selection(SQL("r.state")),
    summary=_text(SQL("r.summary")),
    report_uri=_text(SQL("r.report_uri")),
    started_at=_timestamp(SQL("r.started_at")),
    finished_at=_timestamp(SQL("r.finished_at")),
    environment=_selection(SQL("d.environment")),
    strategy=_selection(SQL("d.strategy")),
    deployment_state=_selection(SQL("d.state")),
    endpoint_url=_text(SQL("d.endpoint_url")),
    target=_text(
        SQL("(SELECT t.code FROM mlops_deployment_target t WHERE t.id = d.target_id)")
    ),
    message=_text(SQL("d.message")),
    drift=_selection(SQL("d.drift")),
    drift_detail=_text(SQL("d.drift_detail")),
    image=_text(SQL("d.image")),
    deployed_at=_timestamp(SQL("d.create_date")),
)


def version(env, version_id):
    """``serializers.version(record, full=True)`` of the version
    ``version_id`` if the caller's rules let it through, else None."""
    found = env["mlops.model.version"]._search([("id", "=", version_id)])
    env.cr.execute(found.select(SQL("json_build_object(%s, %s)", VERSION, CHILDREN)))
    row = env.cr.fetchone()
    return row[0] if row else None


def versions_page(env, domain, limit, offset):
    """``{"items", "total"}``: the versions of ``domain`` the caller's rules
    let through, newest first, as ``serializers.version``."""
    Version = env["mlops.model.version"]
    every = Version._search(domain)
    page = Version._search(domain, offset=offset, limit=limit, order="id desc")
    env.cr.execute(
        page.select(
            SQL(
                "json_build_object(%s), (SELECT count(*) FROM %s AS every)",
                VERSION,
                every.subselect(),
            )
        )
    )
    rows = env.cr.fetchall()
    if rows:
        total = rows[0][1]
    else:
        # past the last page: the count alone
        env.cr.execute(every.select(SQL("count(*)")))
        total = env.cr.fetchone()[0]
    return {"items": [row[0] for row in rows], "total": total}
