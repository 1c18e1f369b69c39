"""django-tenants' backend, remembering which search_path the session really has.

django-tenants forgets the applied search_path whenever the tenant is set, so a worker that
switches to a tenant for a task and back to public after it sends `SET search_path` before every
task, even when the next task is for the same tenant and the session's path never changed (the
switch back to public issues nothing by itself). We keep the last path PostgreSQL accepted on
this session and skip the SET when the wanted path is that one. The record is dropped whenever
the session's path may have changed without us: on close, rollback and savepoint rollback (a
SET is transactional), and when a SET fails.
"""

from typing import Any

from django_tenants.postgresql_backend import base


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._applied_search_path: list[str] | None = None
        super().__init__(*args, **kwargs)

    def set_tenant(self, tenant: Any, include_public: bool = True) -> None:
        super().set_tenant(tenant, include_public)
        applied = getattr(self, "_applied_search_path", None)
        if applied is not None and self.connection is not None and applied == self._get_cursor_search_paths():
            self.search_path_set_schemas = applied

    def _handle_search_path(self, cursor: Any = None) -> None:
        super()._handle_search_path(cursor)
        if self.search_path_set_schemas is not None:
            self._applied_search_path = list(self.search_path_set_schemas)
        else:
            self._applied_search_path = None

    def close(self) -> None:
        self._applied_search_path = None
        super().close()

    def rollback(self) -> None:
        self._applied_search_path = None
        super().rollback()

    def savepoint_rollback(self, sid: Any) -> None:
        self._applied_search_path = None
        super().savepoint_rollback(sid)
