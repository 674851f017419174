"""Use cases: plain functions over a SQLAlchemy session, called by the API, the CLI and the worker."""
