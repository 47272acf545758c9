"""The verbs that wire the stages together: validate, plan, apply, status, history."""
