"""Tessera's REST service: a Starlette app over the engine, served by uvicorn (``tessera serve``)."""

from service.app import create_app

__all__ = ["create_app"]
