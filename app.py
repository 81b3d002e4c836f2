"""WSGI entry point: ``gunicorn app:app``."""

from bot.web import create_app

app = create_app(refuse_insecure=True, background=True)
