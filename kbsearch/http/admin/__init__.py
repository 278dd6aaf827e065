"""The operators' dashboard at ``/admin`` and its JSON API at ``/api/v1/admin``.

``views`` is the dashboard (blueprint ``admin``), ``reindex_api`` the background reindex
for editor keys and the dashboard's script (blueprint ``admin_api``), ``auth`` the logins,
sessions and CSRF tokens, ``sections`` what each section shows, ``jobs`` the start of a
reindex. Like every blueprint, this package imports no other blueprint.
"""

from kbsearch.http.admin.reindex_api import admin_api
from kbsearch.http.admin.views import admin

__all__ = ["admin", "admin_api"]
