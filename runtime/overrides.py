"""Tenant overrides validated like config: AI integration overrides, custom prompts, and the
account's author profiles and strategies go through the spec models and rules `cplane validate`
applies to the global objects.

Integration overrides:
- providers and `api_keys` name known providers only (those IntegrationDefaults accepts);
- each provider's settings have known fields only (PROVIDER_FIELDS), with their types;
- `baseUrl` is `https` on one of the provider's documented hosts (DOCUMENTED_HOSTS), unless the
  account's plan has `allowCustomEndpoints: true`, when any https host is accepted;
- the merged result must be a valid IntegrationDefaults spec (providers, models, sizes, ...).
Every refusal is 422 `validation_error` naming the offending key, provider, field or URL.
"""

from __future__ import annotations

import typing
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from control_plane.kinds.specs import (
    AuthorProfileSpec,
    IntegrationDefaultsSpec,
    StrategySpec,
    template_variables,
)
from runtime.errors import ApiError


def _literal(field: str) -> tuple[str, ...]:
    return typing.get_args(IntegrationDefaultsSpec.model_fields[field].annotation)


TEXT_PROVIDERS = _literal("text_provider")
IMAGE_PROVIDERS = tuple(p for p in _literal("image_provider") if p != "none")
PROVIDERS: tuple[str, ...] = tuple(dict.fromkeys((*TEXT_PROVIDERS, *IMAGE_PROVIDERS)))

# The API hosts each provider documents; `*.` matches any subdomain (Azure resources).
DOCUMENTED_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "google": ("generativelanguage.googleapis.com",),
    "mistral": ("api.mistral.ai",),
    "azure_openai": ("*.openai.azure.com",),
    "runware": ("api.runware.ai",),
    "stability": ("api.stability.ai",),
}


class ProviderSettings(BaseModel):
    """What a provider's block in `providers` may hold (the fields config/integrations uses)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    baseUrl: str | None = Field(None, max_length=2048)  # noqa: N815 - config's spelling
    timeoutSeconds: int | None = Field(None, ge=1, le=3600)  # noqa: N815
    maxRetries: int | None = Field(None, ge=0, le=20)  # noqa: N815
    model: str | None = Field(None, min_length=1, max_length=200)
    models: dict[str, str] | None = None
    temperatureByPromptType: dict[str, float] | None = None  # noqa: N815
    modelByPromptType: dict[str, str] | None = None  # noqa: N815
    width: int | None = Field(None, ge=64, le=8192)
    height: int | None = Field(None, ge=64, le=8192)
    steps: int | None = Field(None, ge=1, le=200)
    outputFormat: str | None = Field(None, max_length=20)  # noqa: N815
    organization: str | None = Field(None, max_length=200)
    apiVersion: str | None = Field(None, max_length=50)  # noqa: N815
    deployment: str | None = Field(None, max_length=200)


PROVIDER_FIELDS = tuple(ProviderSettings.model_fields)


def _invalid(message: str, loc: str) -> ApiError:
    error = ApiError(422, "validation_error", f"{loc}: {message}")
    error.details = [{"loc": loc, "msg": message, "type": "value_error"}]
    return error


def _from_pydantic(exc: ValidationError, prefix: str) -> ApiError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *first.get("loc", ())) if p != "")
    return _invalid(first.get("msg", "invalid value"), loc)


def check_url(provider: str, url: str, allow_custom: bool) -> None:
    loc = f"providers.{provider}.baseUrl"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise _invalid(f"{url!r} is not an https URL", loc)
    if parts.username or parts.password:
        raise _invalid("credentials in the URL are not accepted; use api_keys", loc)
    if allow_custom:
        return
    host = parts.hostname.lower()
    hosts = DOCUMENTED_HOSTS.get(provider, ())
    if not any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in hosts):
        raise _invalid(f"host {host!r} is not a documented {provider} host ({', '.join(hosts)}); "
                       "custom endpoints need a plan with allowCustomEndpoints", loc)


def merge_providers(current: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """Per provider and per field: a provider set to null is removed, a field set to null too."""
    merged = {p: dict(v) for p, v in (current or {}).items() if isinstance(v, dict)}
    for provider, value in (changes or {}).items():
        if value is None:
            merged.pop(provider, None)
            continue
        block = merged.setdefault(provider, {})
        for field, field_value in value.items():
            if field_value is None:
                block.pop(field, None)
            else:
                block[field] = field_value
    return merged


def check_integration_changes(data: dict[str, Any], keys: dict[str, Any] | None, allow_custom: bool) -> None:
    """The request's own parts: known providers, fields and hosts (before merging)."""
    for field, allowed in (("text_provider", TEXT_PROVIDERS), ("image_provider", (*IMAGE_PROVIDERS, "none"))):
        value = data.get(field)
        if value is not None and value not in allowed:
            raise _invalid(f"unknown provider {value!r}; known: {', '.join(allowed)}", field)
    for provider in keys or {}:
        if provider not in PROVIDERS:
            raise _invalid(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}", f"api_keys.{provider}")
    providers = data.get("providers")
    if providers is None:
        return
    for provider, block in providers.items():
        loc = f"providers.{provider}"
        if provider not in PROVIDERS:
            raise _invalid(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}", loc)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise _invalid("must be an object of provider settings (or null to remove them)", loc)
        unknown = sorted(set(block) - set(PROVIDER_FIELDS))
        if unknown:
            raise _invalid(f"unknown field {unknown[0]!r}; known: {', '.join(PROVIDER_FIELDS)}", f"{loc}.{unknown[0]}")
        try:
            ProviderSettings.model_validate({k: v for k, v in block.items() if v is not None})
        except ValidationError as exc:
            raise _from_pydantic(exc, loc) from None
        if block.get("baseUrl") is not None:
            check_url(provider, block["baseUrl"], allow_custom)


def check_integration_result(values: dict[str, Any]) -> None:
    """The merged override is a valid IntegrationDefaults spec, as config would have to be."""
    spec = {to_camel(k): (float(v) if k == "temperature" and v is not None else v) for k, v in values.items()
            if k != "api_keys"}
    try:
        IntegrationDefaultsSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise _invalid(first.get("msg", "invalid value"), _snake(loc)) from None


def _snake(loc: str) -> str:
    head, _, rest = loc.partition(".")
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in head)
    return f"{snake}.{rest}" if rest else snake


# --- prompts -------------------------------------------------------------------------------------


def check_prompt_text(text: str, required: list[str] | None, known: set[str]) -> None:
    """A custom prompt keeps every placeholder its global prompt (the variant it customizes)
    declares, and uses none that no prompt of its type declares (`known`): the product fills only
    declared ones, so `{keywrods}` would reach the model as literal text (config refuses the same
    as "undeclared variables")."""
    used = template_variables(text)
    if required is not None:
        missing = sorted(set(required) - used)
        if missing:
            raise _invalid(f"missing required placeholders: {', '.join('{' + v + '}' for v in missing)}", "text")
    unknown = sorted(used - known - set(required or ()))
    if unknown:
        raise _invalid(f"unknown placeholders: {', '.join('{' + v + '}' for v in unknown)} (prompts of this type "
                       f"fill only {', '.join('{' + v + '}' for v in sorted(known)) or 'none'}; write {{{{ and }}}} "
                       "for literal braces)", "text")


# --- author profiles and strategies --------------------------------------------------------------

SPECS = {"author-profiles": (AuthorProfileSpec, {}), "strategies": (StrategySpec, {"content_type_slug": "content_type"})}


def check_library_object(path: str, display_name: str, fields: dict[str, Any]) -> None:
    """The account's author profile or strategy, as it would be after the edit, is a valid spec
    (stored rows use the spec's field names, so names are accepted besides config's camelCase)."""
    model, renames = SPECS[path]
    spec = {"display_name": display_name}
    spec.update({renames.get(f, f): v for f, v in fields.items() if v is not None})
    try:
        model.model_validate(spec, by_alias=True, by_name=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        parts = [str(p) for p in first.get("loc", ())]
        if parts:
            back = {renames.get(f, f): f for f in fields}
            parts[0] = back.get(parts[0], parts[0])
        raise _invalid(first.get("msg", "invalid value"), ".".join(parts)) from None
