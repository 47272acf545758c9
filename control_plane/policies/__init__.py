"""Guardrails as code: Policy documents (CEL) compiled once, run over objects by validate and over plan changes by plan."""
