"""The helpline's pure core: normalising, crisis triage, topic matching and reply building.

Nothing in this package may import Flask, Twilio or SQLAlchemy (a test walks the imports).
"""
