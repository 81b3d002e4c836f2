"""The on-call panel: who is paged first right now, switched on and off from the dashboard."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from bot.staff import actions
from bot.staff.accounts import list_staff
from bot.web.dashboard import bp
from bot.web.dashboard.common import ext
from bot.web.dashboard.forms import OnCallForm, first_error


@bp.get("/on-call")
def on_call():
    """Active staff, on-call first; anyone switches themselves, an admin anyone."""
    with ext().db.session() as s:
        people = list_staff(s)
    on = [p for p in people if p.on_call]
    return render_template("dashboard/on_call.html", people=people, on=on)


@bp.post("/on-call")
def set_on_call():
    """Switch one staff member on or off call (audited)."""
    form = OnCallForm()
    try:
        if not form.validate_on_submit():
            raise actions.ActionError(first_error(form))
        person = actions.set_on_call(ext().db, current_user, form.staff.data, form.on.data == "on")
    except actions.ActionError as err:
        flash(f"On-call not changed: {err}.", "error")
        return redirect(url_for("dashboard.on_call", _anchor="flashes"))
    who = "You are" if person.id == current_user.id else f"{person.name} is"
    flash(f"{who} now {'ON' if person.on_call else 'OFF'} call.", "success")
    return redirect(url_for("dashboard.on_call", _anchor=f"staff-{person.id}"))
