"""Shipped gunicorn settings: `gunicorn -c gunicorn.conf.py app:app`.

Every value can be overridden from the environment; the defaults suit a small clinic box.
Outbound texts are sent by `helpline worker` processes, never by web workers, so a slow Twilio
cannot slow a webhook.
"""

import multiprocessing
import os

bind = os.environ.get("HELPLINE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("HELPLINE_WEB_WORKERS", min(4, multiprocessing.cpu_count() * 2)))
worker_class = "gthread"
threads = int(os.environ.get("HELPLINE_WEB_THREADS", 4))
# Twilio waits 15 s for a webhook answer; a worker stuck longer than that is useless.
timeout = 20
graceful_timeout = 20
keepalive = 5
# Trust X-Forwarded-* only from the local reverse proxy (see HELPLINE_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("HELPLINE_FORWARDED_ALLOW_IPS", "127.0.0.1")
# No access log by default: request lines carry no bodies, but there is no need for them either.
accesslog = os.environ.get("HELPLINE_ACCESS_LOG") or None
errorlog = "-"
loglevel = "info"
# Each worker builds its own database engine and bot (no fork-shared connections).
preload_app = False
