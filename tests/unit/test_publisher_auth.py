"""The custom-topic publisher authenticates with Entra ID unless a key is configured (devhost has keys; the
topic in Azure has local auth off, infra/modules/scorehook.bicep)."""

from __future__ import annotations

from azure.core.credentials import AzureKeyCredential
from azure.identity import DefaultAzureCredential

from shared.adapters.publisher import EventGridPublisher, NullPublisher, publisher_from_settings
from shared.settings import Settings

ENDPOINT = "https://scorehook-events-x.westeurope-1.eventgrid.azure.net/api/events"


def credential(publisher: EventGridPublisher) -> object:
    return publisher._client._credential  # the client keeps the credential it signs every request with


def test_no_key_setting_publishes_with_the_apps_identity():
    for env in ({"SCOREHOOK_EVENTS_TOPIC_ENDPOINT": ENDPOINT},
                {"SCOREHOOK_EVENTS_TOPIC_ENDPOINT": ENDPOINT, "SCOREHOOK_EVENTS_TOPIC_KEY": ""}):  # fmt: skip
        publisher = publisher_from_settings(Settings.from_env(env))
        assert isinstance(publisher, EventGridPublisher)
        assert isinstance(credential(publisher), DefaultAzureCredential)


def test_a_key_setting_keeps_key_auth():
    env = {"SCOREHOOK_EVENTS_TOPIC_ENDPOINT": ENDPOINT, "SCOREHOOK_EVENTS_TOPIC_KEY": "k1"}
    publisher = publisher_from_settings(Settings.from_env(env))
    assert isinstance(publisher, EventGridPublisher)
    key = credential(publisher)
    assert isinstance(key, AzureKeyCredential) and key.key == "k1"


def test_no_endpoint_no_publisher():
    assert isinstance(publisher_from_settings(Settings.from_env({})), NullPublisher)
