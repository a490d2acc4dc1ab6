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


# the keys of ``serializers.version``, for ``json_build_object``
VERSION = SQL(
    """'id', v.id,
        'model_id', m.id,
        'model', m.name,
        'version', v.version,
        'state', %(state)s,
        'model_format', %(model_format)s,
        'interface_type', %(interface_type)s,
        'description', %(description)s,
        'artifact', json_build_object(
            'uri', %(uri)s,
            'sha256', %(sha256)s,
            'size', NULLIF(v.artifact_size, 0),
            'filename', %(filename)s,
            'download_url', CASE WHEN COALESCE(v.artifact_object_key, '') = ''
                THEN NULL ELSE '/mlops/artifacts/' || v.id || '/download' END,
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
            'parent_version', %(parent)s
        ),
        'created_by', %(created_by)s,
        'created_at', %(created_at)s""",
    state=_selection(SQL("v.state")),
    model_format=_selection(SQL("v.model_format")),
    interface_type=_selection(SQL("v.interface_type")),
    description=_text(SQL("v.description")),
    uri=_text(SQL("v.artifact_uri")),
    sha256=_text(SQL("v.artifact_sha256")),
    filename=_text(SQL("v.artifact_filename")),
    verified_at=_timestamp(SQL("v.artifact_verified_at")),
    parameters=_json(SQL("v.parameters"), SQL("'{}'::jsonb")),
    metrics=_json(SQL("v.metrics"), SQL("'{}'::jsonb")),
    inputs=_json(SQL("v.input_schema"), SQL("NULL")),
    outputs=_json(SQL("v.output_schema"), SQL("NULL")),
    source_run=_text(SQL("v.source_run")),
    dataset=_text(SQL("v.dataset")),
    git_commit=_text(SQL("v.git_commit")),
    parent=_text(SQL("p.version")),
    created_by=_text(SQL("u.login")),
    created_at=_timestamp(SQL("v.create_date")),
)

VERSION_FROM = SQL(
    """mlops_model_version v
    JOIN mlops_model m ON m.id = v.model_id
    LEFT JOIN res_users u ON u.id = v.uploaded_by_id
    LEFT JOIN mlops_model_version p ON p.id = v.parent_version_id"""
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
            FROM mlops_validation_result r WHERE r.version_id = v.id
        ), '[]'),
        'deployments', COALESCE((
            SELECT json_agg(json_build_object(
                'id', d.id,
                'version_id', v.id,
                'version', v.version,
                'environment', %(environment)s,
                'strategy', %(strategy)s,
                'state', %(deployment_state)s,
                'replicas', COALESCE(d.replicas, 0),
                'traffic_percent', COALESCE(d.traffic_percent, 0),
                'endpoint_url', %(endpoint_url)s,
                'target', %(target)s,
                'message', %(message)s,
                'created_at', %(deployed_at)s
            ) ORDER BY d.id DESC)
            FROM mlops_deployment d
            LEFT JOIN mlops_deployment_target t ON t.id = d.target_id
            WHERE d.version_id = v.id
        ), '[]')""",
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
    target=_text(SQL("t.code")),
    message=_text(SQL("d.message")),
    deployed_at=_timestamp(SQL("d.create_date")),
)


# PL/pgSQL keeps the plans of a function's statements for the session, so
# the statement building the answers (three joins, two correlated
# aggregates: 0.4 to 0.6 ms to plan, against 0.15 to run) is planned once
# per database connection, not on every request. Made by the version
# model's ``init()``, on install and on every update of the module.
FUNCTION = SQL(
    """CREATE OR REPLACE FUNCTION mlops_version_answers(
        ids integer[], full_answer boolean
    ) RETURNS json LANGUAGE plpgsql STABLE
    SET plan_cache_mode = force_generic_plan AS $fn$
    BEGIN
        IF full_answer THEN
            RETURN (SELECT json_agg(json_build_object(%(version)s, %(children)s)
                                    ORDER BY x.ord)
                    FROM unnest(ids) WITH ORDINALITY AS x(id, ord)
                    JOIN %(from)s ON v.id = x.id);
        END IF;
        RETURN (SELECT json_agg(json_build_object(%(version)s) ORDER BY x.ord)
                FROM unnest(ids) WITH ORDINALITY AS x(id, ord)
                JOIN %(from)s ON v.id = x.id);
    END
    $fn$""",
    version=VERSION,
    children=CHILDREN,
    **{"from": VERSION_FROM},
)


def create_function(cr):
    cr.execute(FUNCTION)


def version(env, version_id):
    """``serializers.version(record, full=True)`` of the version
    ``version_id`` if the caller's rules let it through, else None."""
    found = env["mlops.model.version"]._search([("id", "=", version_id)])
    env.cr.execute(
        SQL("SELECT mlops_version_answers(ARRAY%s, true)", found.subselect())
    )
    answers = env.cr.fetchone()[0]
    return answers[0] if answers else None


def versions_page(env, domain, limit, offset):
    """``{"items", "total"}``: the versions of ``domain`` the caller's rules
    let through, newest first, as ``serializers.version``."""
    found = env["mlops.model.version"]._search(domain)
    env.cr.execute(
        SQL(
            """SELECT mlops_version_answers(ARRAY(
                          SELECT id FROM %s AS page ORDER BY id DESC LIMIT %s OFFSET %s
                      ), false),
                      (SELECT count(*) FROM %s AS every)""",
            found.subselect(),
            limit,
            offset,
            found.subselect(),
        )
    )
    answers, total = env.cr.fetchone()
    return {"items": answers or [], "total": total}
