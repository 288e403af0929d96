"""The webhook endpoints the gateway serves, by name (`POST /webhooks/{name}`)."""

from __future__ import annotations

from streams.gateway.providers import (
    events,
    freshdesk,
    hubspot,
    intercom,
    pipedrive,
    salesforce,
    stripe,
    zendesk,
)
from streams.gateway.providers.base import Provider

PROVIDERS: dict[str, Provider] = {
    module.PROVIDER.name: module.PROVIDER
    for module in (events, hubspot, stripe, zendesk, intercom, pipedrive, freshdesk, salesforce)
}
