"""Security headers: one function sets them on every response, with the page's CSP as a parameter.

TwiML, JSON and scripts need no content at all (``API_CSP``); the dashboard's pages load only
their own static script and style (``PAGE_CSP``); the demo clinic page also lets the widget call
the API (``DEMO_CSP``). A view or blueprint chooses its policy with :func:`use_csp`; the app's
``after_request`` hook then calls :func:`set_security_headers` once per response.
"""

from __future__ import annotations

from flask import g

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
DEMO_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def set_security_headers(resp, csp: str = API_CSP, hsts: bool = False):
    """No sniffing, no framing, no referrer, this CSP; HSTS when served over HTTPS."""
    resp.headers["Content-Security-Policy"] = csp
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    if hsts:
        resp.headers["Strict-Transport-Security"] = "max-age=31536000"
    return resp


def use_csp(csp: str) -> None:
    """Serve the current request's response with this Content-Security-Policy."""
    g.csp = csp


def current_csp() -> str:
    """The policy chosen for this request (the strictest one unless a view chose another)."""
    return g._get_current_object().get("csp", API_CSP)  # not through the proxy: see twilio_adapter.twilio_signed
