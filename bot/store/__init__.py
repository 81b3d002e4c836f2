"""Durable storage: SQLAlchemy models and the database handle (SQLite or PostgreSQL)."""
