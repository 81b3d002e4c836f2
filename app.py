"""WSGI entry point: ``gunicorn app:app``."""

from bot.web import create_app, settle_for_serving

app = create_app(refuse_insecure=True, background=True)
settle_for_serving()
