"""The reference: a bare Flask app that answers every POST /sms with one fixed TwiML reply.

Served by the same gunicorn command line as the real app (``gunicorn bare_app:app`` from
``bench/``), so the difference between the two is the helpline's own work: signature
validation, form parsing, storage, triage, topic matching and rendering.
"""

from flask import Flask
from twilio.twiml.messaging_response import MessagingResponse

app = Flask(__name__)

REPLY = ("Solace Hills Detox: diazepam withdrawal can be dangerous; don't stop suddenly, talk to a "
         "doctor. Call us: (562) 573-1504.")


def fixed_twiml():
    """A fixed MessagingResponse, built per request as the app does (also the floor's answer)."""
    resp = MessagingResponse()
    resp.message(REPLY)
    return str(resp), 200, {"Content-Type": "text/xml; charset=utf-8"}


def healthz():
    return {"ok": True}


app.add_url_rule("/sms", view_func=fixed_twiml, methods=["POST"])
app.add_url_rule("/healthz", view_func=healthz)
