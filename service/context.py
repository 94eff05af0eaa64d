"""What every endpoint needs from the app: the database and the settings, typed."""

from __future__ import annotations

from starlette.requests import Request

from engine import Database, Settings, Table


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def table_of(request: Request) -> Table:
    """The table named in the path; ``InvalidName`` (400) or ``TableNotFound`` (404). Blocking: call in a thread."""
    return database(request).table(request.path_params["table"])
