"""Odoo API keys, checked without paying PBKDF2 on every request.

Odoo stores each key as a PBKDF2-SHA512 hash (6,000 rounds, about 4 ms of
CPU) and ``res.users.apikeys._check_credentials`` verifies it on every call.
Here the same query runs on every request (the key's index, an active
user, the scope, the expiry), so a key deleted, expired or whose user is
archived fails at once; only the hash comparison is skipped when this
process has verified the same key against the same stored hash before
(remembered by the key's SHA-256, never the key).
"""

import hashlib
import threading

from odoo.addons.base.models.res_users import INDEX_SIZE, KEY_CRYPT_CONTEXT

MAX_REMEMBERED = 10_000
_verified = {}
_lock = threading.Lock()

QUERY = """
    SELECT k.user_id, k.key
    FROM res_users_apikeys k INNER JOIN res_users u ON (u.id = k.user_id)
    WHERE u.active AND k.index = %s
      AND (k.scope IS NULL OR k.scope = %s)
      AND (k.expiration_date IS NULL
           OR k.expiration_date >= now() at time zone 'utc')
"""


def check(env, key, scope="rpc"):
    """The user id of the valid API key ``key``, or None."""
    if not key:
        return None
    env.cr.execute(QUERY, [key[:INDEX_SIZE], scope])
    rows = env.cr.fetchall()
    remembered = (env.cr.dbname, scope, hashlib.sha256(key.encode()).hexdigest())
    with _lock:
        known = _verified.get(remembered)
    if known is not None and tuple(known) in {tuple(row) for row in rows}:
        return known[0]
    for user_id, stored in rows:
        if KEY_CRYPT_CONTEXT.verify(key, stored):
            with _lock:
                if len(_verified) >= MAX_REMEMBERED:
                    _verified.clear()
                _verified[remembered] = (user_id, stored)
            return user_id
    with _lock:
        _verified.pop(remembered, None)
    return None
