"""infra/ agrees with the code: app setting names (shared/settings.py) and the Event Grid subscription
(devhost/subscriptions.json, the local mirror). The Bicep cannot be deployed here, so it is read as text."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from shared.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
LOCAL_ONLY = {"DataStorage", "SCOREHOOK_LOG_FILE", "SCOREHOOK_LOG_CONSOLE", "SCOREHOOK_LOG_FORMAT",
              "SCOREHOOK_EVENTHUBS_LOCAL"}  # local-only: never set in Azure
HOST_SETTINGS = {"AzureWebJobsStorage__accountName", "APPLICATIONINSIGHTS_CONNECTION_STRING"}
FLEX_REFUSED = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_CONTENTSHARE"}
APP_PREFIXES = ("SCOREHOOK_", "MLFLOW_")


def bicep_files() -> list[Path]:
    files = sorted(INFRA.rglob("*.bicep"))
    assert INFRA / "main.bicep" in files
    return files


def read(path: Path) -> str:
    """A Bicep file without its ``//`` comments (quoted strings, which may hold ``//``, are kept)."""
    return re.sub(r"('(?:\\.|[^'\\\n])*')|//[^\n]*", lambda m: m.group(1) or "", path.read_text())


def block_at(text: str, start: int) -> str:
    """The ``{...}`` or ``[...]`` block opening at or after ``start`` (quoted strings skipped)."""
    opening = re.compile(r"[{\[]").search(text, start)
    assert opening, f"no block after offset {start}"
    depth, i, in_string = 0, opening.start(), False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == "'":
                in_string = False
        elif ch == "'":
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[opening.start() : i + 1]
        i += 1
    raise AssertionError("unbalanced block")


def resource_blocks(resource_type: str) -> list[str]:
    """Bodies of every ``resource x 'TYPE@version' = ...`` declaration in infra/."""
    pattern = re.compile(rf"^resource\s+\w+\s+'{re.escape(resource_type)}@[\w-]+'\s*=", re.M)
    return [
        block_at(text, m.end()) for f in bicep_files() for text in [read(f)] for m in pattern.finditer(text)
    ]


def top_level_keys(block: str) -> list[str]:
    """Keys of the object literal ``block`` at its own level (values are not descended into)."""
    keys, depth, in_string = [], 0, False
    for line in block[1:-1].splitlines():
        if depth == 0 and not in_string:
            m = re.match(r"\s*(?:'([^']+)'|([A-Za-z_]\w*))\s*:", line)
            if m:
                keys.append(m.group(1) or m.group(2))
        for ch in line:  # Bicep strings are single-line here; a quote toggles, braces count outside them
            if ch == "'":
                in_string = not in_string
            elif not in_string and ch in "{[":
                depth += 1
            elif not in_string and ch in "}]":
                depth -= 1
    return keys


def app_settings() -> dict[str, str]:
    """App setting name → its Bicep value expression, from the ``sites/config`` 'appsettings' resource or
    from ``siteConfig.appSettings`` arrays of ``{ name, value }``."""
    found: dict[str, str] = {}
    for block in resource_blocks("Microsoft.Web/sites/config"):
        if re.search(r"^\s*name:\s*'appsettings'", block, re.M):
            properties = re.search(r"^\s*properties:", block, re.M)
            assert properties, "the appsettings resource has no properties"
            props = block_at(block, properties.end())
            for key in top_level_keys(props):
                value = re.search(rf"^\s*'?{re.escape(key)}'?\s*:\s*(.+)$", props, re.M)
                found[key] = value.group(1).strip() if value else ""
    for block in resource_blocks("Microsoft.Web/sites"):
        for m in re.finditer(r"appSettings:\s*\[", block):
            for entry in re.finditer(
                r"name:\s*'([^']+)'\s*[\n,]\s*value:\s*(.+)", block_at(block, m.end() - 1)
            ):
                found[entry.group(1)] = entry.group(2).strip()
    assert found, "no app settings found in infra/"
    return found


def subscriptions() -> list[dict]:
    data = json.loads((ROOT / "devhost" / "subscriptions.json").read_text())
    assert data["subscriptions"], "devhost/subscriptions.json has no subscription"
    return data["subscriptions"]


def event_subscription_block(name: str) -> str:
    types = (
        "Microsoft.EventGrid/systemTopics/eventSubscriptions",
        "Microsoft.EventGrid/topics/eventSubscriptions",
        "Microsoft.EventGrid/eventSubscriptions",
    )
    named = re.compile(rf"^\s*name:\s*'{re.escape(name)}'\s*$", re.M)
    blocks = [b for t in types for b in resource_blocks(t) if named.search(b)]
    assert len(blocks) == 1, f"expected one event subscription named {name!r} in infra/, found {len(blocks)}"
    return blocks[0]


def literal(expression: str) -> str:
    """The string a Bicep value expression stands for, when it is a plain literal."""
    m = re.fullmatch(r"'([^'$]*)'", expression.strip())
    assert m, f"expected a string literal, got {expression!r}"
    return m.group(1)


def created_names(resource_type: str) -> set[str]:
    """Names given to resources of a type: literal ``name: '...'``, or the items of the ``var`` array
    a resource loop runs over (``for name in someVar``)."""
    text = "\n".join(read(f) for f in bicep_files())
    names: set[str] = set()
    for block in resource_blocks(resource_type):
        names.update(re.findall(r"^\s*name:\s*'([^'$]+)'\s*$", block, re.M))
        for var in re.findall(r"\bfor\s+\w+\s+in\s+(\w+)\s*:", block):
            array = re.search(rf"^var\s+{var}\s*=\s*(\[[^\]]*\])", text, re.M)
            assert array, f"loop over unknown var {var}"
            names.update(re.findall(r"'([^']+)'", array.group(1)))
    return names


def test_app_setting_names_used_in_bicep_are_defined_in_settings():
    known = set(SETTING_NAMES)
    app_names = {n for n in app_settings() if n.startswith((*APP_PREFIXES, "DataStorage"))}
    assert app_names <= known, f"unknown app settings in infra/: {sorted(app_names - known)}"
    # A SCOREHOOK_/MLFLOW_ name anywhere else in infra/ (outputs, parameters, comments) must exist too.
    pattern = r"\b(?:SCOREHOOK|MLFLOW)_[A-Z0-9_]+\b"
    mentioned = {m for f in bicep_files() for m in re.findall(pattern, f.read_text())}
    assert mentioned <= known, f"unknown names in infra/: {sorted(mentioned - known)}"


def test_every_setting_except_local_only_ones_is_set_in_bicep():
    names = set(app_settings())
    missing = set(SETTING_NAMES) - LOCAL_ONLY - names
    assert not missing, f"settings missing from infra/: {sorted(missing)}"
    assert not (LOCAL_ONLY & names), f"local-only settings set in infra/: {sorted(LOCAL_ONLY & names)}"


def test_host_settings_are_identity_based_and_flex_compatible():
    settings = app_settings()
    assert set(settings) >= HOST_SETTINGS
    assert "AzureWebJobsStorage" not in settings  # a connection string: identity-based in Azure
    assert not (FLEX_REFUSED & set(settings)), "Flex Consumption refuses these app settings"
    # The custom topic takes Entra ID only: no key setting, local auth off, the app may send.
    assert settings["SCOREHOOK_EVENTS_TOPIC_KEY"] == "''"
    (topic,) = resource_blocks("Microsoft.EventGrid/topics")
    assert re.search(r"disableLocalAuth:\s*true\b", topic)
    assert "roles.eventGridDataSender" in "\n".join(
        resource_blocks("Microsoft.Authorization/roleAssignments")
    )
    # The webhook secret is a Key Vault reference to a secret the template itself creates (never a literal).
    secret = settings["SCOREHOOK_MLFLOW_WEBHOOK_SECRET"]
    reference = re.fullmatch(
        r"'@Microsoft\.KeyVault\(SecretUri=\$\{(\w+)\.properties\.secretUri\}\)'", secret
    )
    assert reference, secret
    declared = re.search(
        rf"^resource\s+{reference.group(1)}\s+'Microsoft.KeyVault/vaults/secrets@[\w-]+'\s*=\s*\{{",
        "\n".join(read(f) for f in bicep_files()),
        re.M,
    )
    assert declared, "the webhook secret must be created by infra/, not referenced as existing"


def test_configured_containers_and_ledger_table_are_created():
    settings = app_settings()
    containers = created_names("Microsoft.Storage/storageAccounts/blobServices/containers")
    for name in ("SCOREHOOK_INPUT_CONTAINER", "SCOREHOOK_OUTPUT_CONTAINER", "SCOREHOOK_FAILED_CONTAINER",
                 "SCOREHOOK_DEADLETTER_CONTAINER"):  # fmt: skip
        assert literal(settings[name]) in containers, f"{name} names a container infra/ does not create"
    storage = [s for s in subscriptions() if "storageAccount" in s["source"]]
    dead_letter_containers = {
        s["deadLetterDestination"]["container"] for s in storage if "deadLetterDestination" in s
    }
    for sub in storage:
        subject_container = re.match(
            r"/blobServices/default/containers/([^/]+)/", sub["filter"]["subjectBeginsWith"]
        )
        assert subject_container and subject_container.group(1) in containers
        if subject_container.group(1) in dead_letter_containers:
            # The dead-letter subscription: dead letters of its own would loop back into it.
            assert "deadLetterDestination" not in sub, f"{sub['name']} must not dead-letter"
            assert sub["endpoint"]["functionName"] == "on_deadletter"
        else:
            assert subject_container.group(1) == literal(settings["SCOREHOOK_INPUT_CONTAINER"])
            assert sub["deadLetterDestination"]["container"] in containers
    assert dead_letter_containers == {literal(settings["SCOREHOOK_DEADLETTER_CONTAINER"])}
    # Every dead-letter container is watched: no dead letter is invisible.
    for container in dead_letter_containers:
        watched = [
            s for s in storage if s["filter"]["subjectBeginsWith"].endswith(f"/containers/{container}/")
        ]
        assert len(watched) == 1, f"dead-letter container {container} needs one subscription to on_deadletter"
    tables = created_names("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert literal(settings["SCOREHOOK_LEDGER_TABLE"]) in tables


@pytest.mark.parametrize("sub", subscriptions(), ids=lambda s: s["name"])
def test_event_subscription_matches_devhost_mirror(sub: dict):
    block = event_subscription_block(sub["name"])

    types_list = re.search(r"includedEventTypes:\s*(\[[^\]]*\])", block)
    assert types_list, "includedEventTypes not found"
    assert re.findall(r"'([^']+)'", types_list.group(1)) == sub["filter"]["includedEventTypes"]

    begins = re.search(r"subjectBeginsWith:\s*'([^']*)'", block)
    assert (begins.group(1) if begins else None) == sub["filter"].get("subjectBeginsWith")

    for key in ("maxDeliveryAttempts", "eventTimeToLiveInMinutes"):
        value = re.search(rf"{key}:\s*(\d+)", block)
        assert value and int(value.group(1)) == sub["retryPolicy"][key], key

    schema = re.search(r"eventDeliverySchema:\s*'([^']+)'", block)
    assert schema and schema.group(1) == sub["eventDeliverySchema"]

    assert re.search(r"endpointType:\s*'AzureFunction'", block)
    function = re.search(r"resourceId:\s*'\$\{\w+\.id\}/functions/(\w+)'", block)
    assert function and function.group(1) == sub["endpoint"]["functionName"]

    dead_letter = re.search(r"blobContainerName:\s*'([^']+)'", block)
    expected = (sub.get("deadLetterDestination") or {}).get("container")
    assert (dead_letter.group(1) if dead_letter else None) == expected


def test_subscribed_functions_exist_in_the_app():
    names = {f.get_function_name() for f in functions()}
    for sub in subscriptions():
        assert sub["endpoint"]["functionName"] in names


# ---------------------------------------------------------------- `azd up` yields an app that can score
@functools.cache
def functions() -> tuple:
    """The app's functions (``get_functions`` indexes the app and may run only once per process)."""
    from function_app import app

    return tuple(app.get_functions())


def main_params() -> dict[str, str]:
    """``param`` name → the rest of its declaration line in main.bicep (type and default, if any)."""
    return dict(re.findall(r"^param\s+(\w+)\s+(.+)$", read(INFRA / "main.bicep"), re.M))


def parameters_json() -> dict[str, str]:
    data = json.loads((INFRA / "main.parameters.json").read_text())
    return {name: entry["value"] for name, entry in data["parameters"].items()}


def test_every_parameter_is_mapped_from_the_azd_environment():
    derived = {"now"}  # utcNow(): a parameter default Bicep evaluates at deployment, never given
    mapped = parameters_json()
    assert set(main_params()) - derived == set(mapped), "main.parameters.json must map every parameter"
    for name, value in mapped.items():
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", value), (
            f"{name}: {value!r} is not an azd env value"
        )


def test_the_tracking_uri_and_the_webhook_secret_are_required_inputs():
    params, mapped, settings = main_params(), parameters_json(), app_settings()
    assert settings["MLFLOW_TRACKING_URI"] == "mlflowTrackingUri"
    assert params["mlflowTrackingUri"] == "string", "mlflowTrackingUri must have no default"
    assert mapped["mlflowTrackingUri"] == "${MLFLOW_TRACKING_URI}", (
        "no fallback: the hook refuses an empty one"
    )
    assert params["webhookSecret"] == "string"
    assert re.search(r"@secure\(\)\s*(@\w+\([^)]*\)\s*)*@description\([^\n]*\)\s*param webhookSecret\b",
                     read(INFRA / "main.bicep"))  # fmt: skip
    assert "principalType" in params and "'User'" in params["principalType"]
    assert "principalType: 'User'" not in "\n".join(read(f) for f in bicep_files())


def test_every_function_event_grid_targets_has_a_subscription():
    targets = {f.get_function_name() for f in functions()
               if any(b.type == "eventGridTrigger" for b in f.get_bindings())}  # fmt: skip
    text = "\n".join(read(f) for f in bicep_files())
    subscribed = set(re.findall(r"resourceId:\s*'\$\{\w+(?:\.id)?\}/functions/(\w+)'", text))
    assert targets == subscribed, f"without subscription: {sorted(targets - subscribed)}"


def subscription_filter(name: str) -> tuple[list[str], str]:
    """Event types and the advanced filters (as text) of the Azure ML subscription ``name``."""
    (block,) = [b for b in resource_blocks("Microsoft.EventGrid/systemTopics/eventSubscriptions")
                if re.search(rf"^\s*name:\s*'{name}'\s*$", b, re.M)]  # fmt: skip
    types = re.search(r"includedEventTypes:\s*(\[[^\]]*\])", block)
    assert types
    advanced = re.search(r"advancedFilters:\s*\[", block)
    return re.findall(r"'([^']+)'", types.group(1)), block_at(block, advanced.end() - 1) if advanced else ""


def test_azure_ml_events_reach_the_functions_filtered_as_they_need():
    import yaml

    from shared.drift.signals import BREACH_TAG, RUN_COMPLETED, RUN_STATUS_CHANGED
    from shared.registrations import MODEL_REGISTERED

    assert subscription_filter("azureml-model-registered") == ([MODEL_REGISTERED], "")
    types, advanced = subscription_filter("azureml-retraining-runs")
    assert set(types) == {RUN_COMPLETED, RUN_STATUS_CHANGED}
    pipeline = yaml.safe_load((INFRA / "ml" / "retrain-pipeline.yml").read_text())
    experiment = re.search(
        r"^param retrainExperiment string = '([^']+)'", read(INFRA / "modules" / "azureml.bicep"), re.M
    )
    assert experiment and experiment.group(1) == pipeline["experiment_name"]
    assert "data.ExperimentName" in advanced and "values: [retrainExperiment]" in advanced
    from shared.batch_offload import EXPERIMENT

    types, advanced = subscription_filter("azureml-batch-jobs")
    assert set(types) == {RUN_COMPLETED, RUN_STATUS_CHANGED}
    batch = re.search(r"^param batchExperiment string = '([^']+)'", read(INFRA / "modules" / "azureml.bicep"), re.M)
    assert batch and batch.group(1) == EXPERIMENT and "values: [batchExperiment]" in advanced
    types, advanced = subscription_filter("azureml-monitor-breaches")
    assert types == [RUN_STATUS_CHANGED] and f"data.RunTags.{BREACH_TAG}" in advanced


def test_every_container_and_queue_the_app_names_is_created():
    from shared.settings import Settings

    containers = created_names("Microsoft.Storage/storageAccounts/blobServices/containers")
    defaults = Settings.from_env({})
    named = {getattr(defaults, a) for a in dir(defaults) if a.endswith("_container")}
    assert len(named) == len([n for n in SETTING_NAMES if n.endswith("_CONTAINER")])
    assert named and named <= containers, f"not created: {sorted(named - containers)}"
    # blob://CONTAINER/... data the settings point at (the holdout the postprovision hook uploads)
    default = re.search(r"^param evaluationData string = '([^']+)'", read(INFRA / "main.bicep"), re.M)
    assert default and re.match(r"blob://([^/]+)/", default.group(1)).group(1) in containers  # type: ignore[union-attr]
    assert app_settings()["SCOREHOOK_DRIFT_REFERENCE_DATA"] == "evaluationData"
    queues = {
        b.queue_name for f in functions() for b in f.get_bindings() if b.type in ("queue", "queueTrigger")
    }
    created = created_names("Microsoft.Storage/storageAccounts/queueServices/queues")
    assert queues and queues <= created, f"queues not created: {sorted(queues - created)}"


def test_app_has_a_health_check_and_the_webhook_url_is_an_output():
    (site,) = resource_blocks("Microsoft.Web/sites")
    path = re.search(r"healthCheckPath:\s*'([^']+)'", site)
    routes = {b.route for f in functions() for b in f.get_bindings() if b.type == "httpTrigger"}
    assert path and path.group(1).removeprefix("/api/") in routes
    assert re.search(
        r"^output WEBHOOK_URL string = '.*/api/mlflow-webhook'$", read(INFRA / "main.bicep"), re.M
    )
    assert "mlflow-webhook" in routes


def test_the_vault_keeps_deleted_secrets_and_every_secret_expires():
    (vault,) = resource_blocks("Microsoft.KeyVault/vaults")
    assert re.search(r"enablePurgeProtection:\s*true", vault)
    secrets = resource_blocks("Microsoft.KeyVault/vaults/secrets")
    assert secrets and all(re.search(r"exp:\s*\w+", s) and "contentType:" in s for s in secrets)


def test_every_checkov_skip_names_one_check_and_gives_a_reason():
    skips = [line for f in bicep_files() for line in f.read_text().splitlines() if "checkov:skip" in line]
    assert skips, "the Bicep is expected to carry its explained skips inline"
    for line in skips:
        assert re.fullmatch(r"\s*// checkov:skip=CKV2?_AZURE_\d+:\S.{15,}", line), (
            f"skip without a reason: {line}"
        )


def test_event_hubs_are_behind_a_parameter_entra_only_with_the_hubs_and_roles_the_app_uses():
    from shared.settings import Settings

    module = read(INFRA / "modules" / "scorehook.bicep")
    assert re.search(r"^param streaming bool = false$", module, re.M)
    assert main_params()["streaming"] == "bool = false" and parameters_json()["streaming"] == "${STREAMING=false}"
    (namespace,) = resource_blocks("Microsoft.EventHub/namespaces")
    assert re.search(r"disableLocalAuth:\s*true\b", namespace) and re.search(r"minimumTlsVersion:\s*'1\.2'", namespace)
    declared = re.findall(r"^resource\s+\w+\s+'Microsoft\.(?:EventHub/[\w/]+|Authorization/roleAssignments|Storage/[\w/]+)"
                          r"@[\w-]+'\s*=\s*(\[\s*for [^:]+:\s*)?if \((streaming[^)]*)\)", module, re.M)  # fmt: skip
    assert len(declared) == 7, "namespace, hubs, consumer group, checkpoint container, three role assignments"
    hubs = re.search(r"^var streamHubs = (\[[^\]]*\])", module, re.M)
    names = re.findall(r"'([^']+)'", hubs.group(1))  # type: ignore[union-attr]
    defaults = Settings.from_env({})
    assert names[:2] == [defaults.stream_hub, defaults.stream_output_hub] and "scorehook-monitoring" in names
    settings = app_settings()
    assert settings["SCOREHOOK_STREAM_HUB"] == "streamHubs[0]" and settings["SCOREHOOK_STREAM_OUTPUT_HUB"] == "streamHubs[1]"
    assert settings["SCOREHOOK_STREAM_ENABLED"] == "streaming ? 'true' : 'false'"
    assert settings["SCOREHOOK_STREAM_CONSUMER_GROUP"] == "streaming ? streamConsumerGroup : '$Default'"
    assert settings["EventHubs__fullyQualifiedNamespace"].startswith("streaming ? '${eventHubsNamespace}.servicebus")
    (group,) = resource_blocks("Microsoft.EventHub/namespaces/eventhubs/consumergroups")
    assert "parent: hubs[0]" in group and "name: streamConsumerGroup" in group
    roles = "\n".join(resource_blocks("Microsoft.Authorization/roleAssignments"))
    assert "roles.eventHubsDataReceiver" in roles and "roles.eventHubsDataSender" in roles
    checkpoints = [b for b in resource_blocks("Microsoft.Storage/storageAccounts/blobServices/containers")
                   if "azure-webjobs-eventhub" in b]  # fmt: skip
    assert checkpoints and "parent: hostBlobs" in checkpoints[0]
