"""What the chat API itself says (the bot's replies come from replies/ as for SMS)."""

from __future__ import annotations

from flask import current_app

# Text the API itself writes, by language.
STRINGS = {
    "en": {
        "greeting": "Hi, I'm the {clinic} automated assistant. Ask me about diazepam (Valium) dependency, "
                    "withdrawal, detox, costs or hours. If you are in danger, call 911, or call or text 988 "
                    "(24/7). Staff read every crisis message and can join this chat. You can also call us "
                    "at {phone}.",
        "limited": "You are sending messages faster than we can answer. Please wait a few minutes, or call "
                   "us at {phone}. If you are in danger, call 911 now, or call or text 988 (24/7).",
        "start_limited": "Too many new chats from this connection. Please call us at {phone}. If you are in "
                         "danger, call 911 now, or call or text 988 (24/7).",
        "reply_limited": "You have reached the limit of automated replies for now. Please call us at {phone}. "
                         "If you are in danger, call 911, or call or text 988 (24/7).",
        "optout": "Automated replies are off. Send START to turn them back on, or call us at {phone}. "
                  "If you are in danger, call 911, or call or text 988.",
        "too_long": "That message is too long (at most 1,600 characters). Please send it in parts.",
        "expired": "This chat has ended. Start a new chat, or call us at {phone}.",
        "bad_phone": "Please enter a phone number like (562) 555-0123 or +1 562 555 0123.",
        "no_escalation": "A call back is offered once staff have been alerted. Call us at {phone}, or 911 "
                         "in an emergency.",
        "callback_saved": "Thank you. Staff will call you at the number ending {last4}. If you are in danger, "
                          "call 911 now.",
    },
    "es": {
        "greeting": "Hola, soy el asistente automático de {clinic}. Pregúntame sobre la dependencia del "
                    "diazepam (Valium), la abstinencia, la desintoxicación, costos u horarios. Si corres "
                    "peligro, llama al 911, o llama al 988 y marca 2. El personal lee cada mensaje de crisis "
                    "y puede unirse a este chat. También puedes llamarnos al {phone}.",
        "limited": "Estás enviando mensajes más rápido de lo que podemos responder. Espera unos minutos o "
                   "llámanos al {phone}. Si corres peligro, llama al 911 ahora, o llama al 988 y marca 2.",
        "start_limited": "Demasiados chats nuevos desde esta conexión. Llámanos al {phone}. Si corres "
                         "peligro, llama al 911 ahora, o llama al 988 y marca 2.",
        "reply_limited": "Llegaste al límite de respuestas automáticas por ahora. Llámanos al {phone}. Si "
                         "corres peligro, llama al 911, o llama al 988 y marca 2.",
        "optout": "Las respuestas automáticas están apagadas. Envía START para activarlas, o llámanos al "
                  "{phone}. Si corres peligro, llama al 911 o al 988.",
        "too_long": "Ese mensaje es demasiado largo (máximo 1.600 caracteres). Envíalo en partes.",
        "expired": "Este chat terminó. Empieza un chat nuevo, o llámanos al {phone}.",
        "bad_phone": "Escribe un número como (562) 555-0123 o +1 562 555 0123.",
        "no_escalation": "Ofrecemos una llamada cuando el personal ha sido alertado. Llámanos al {phone}, o "
                         "al 911 en una emergencia.",
        "callback_saved": "Gracias. El personal te llamará al número que termina en {last4}. Si corres "
                          "peligro, llama al 911 ahora.",
    },
}


def language(value: object) -> str | None:
    """A language code the chat speaks, or None."""
    return value if value in STRINGS else None


def say(key: str, lang: str | None, **extra) -> str:
    """One of the API's texts in this language (English by default), with the clinic filled in."""
    content = current_app.extensions["helpline"].helpline.bot.content
    text = STRINGS.get(lang or "en", STRINGS["en"])[key]
    return text.format(clinic=content.clinic_name, phone=content.clinic_phone, **extra)
