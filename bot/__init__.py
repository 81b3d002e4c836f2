"""Solace Hills Detox helpline bot: a pure core (bot.core) behind thin Twilio/Flask adapters."""
