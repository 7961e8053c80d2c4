"""The optional Event Grid topic for callEnded events (issue 19, infra): off by default, CloudEvents 1.0 in,
no keys, the storage identity as the only publisher, and a webhook subscription that dead-letters through
the topic's own identity.
"""

from __future__ import annotations

import json
import re

from tests.infra.test_templates import (
    EVENTS,
    MAIN,
    ROOT,
    app_settings,
    body,
    condition,
    module_named,
    param,
    parse,
    resources_of_type,
    variable,
)


def topic() -> dict:
    (resource,) = resources_of_type(EVENTS, "Microsoft.EventGrid/topics").values()
    return resource


def subscription() -> dict:
    (resource,) = resources_of_type(EVENTS, "Microsoft.EventGrid/topics/eventSubscriptions").values()
    return resource


def test_the_topic_is_off_by_default_and_a_webhook_url_turns_it_on():
    assert param(MAIN, "enableCallEventsTopic")["default"] is False
    assert param(MAIN, "callEventsWebhookUrl")["default"] == ""
    on = json.dumps(variable(MAIN, "callEventsTopicOn"))
    assert '"enableCallEventsTopic"' in on and '"callEventsWebhookUrl"' in on and '"or"' in on
    assert condition(module_named("callEvents")) == "callEventsTopicOn"
    given = json.loads((MAIN.parent / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert given["enableCallEventsTopic"]["value"] == "${CALL_EVENTS_TOPIC_ENABLED=false}"
    assert given["callEventsWebhookUrl"]["value"] == "${CALL_EVENTS_WEBHOOK_URL=}"


def test_the_topic_takes_cloudevents_only_and_refuses_keys():
    config = body(topic())
    props = config["properties"]
    assert props["inputSchema"] == "CloudEventSchemaV1_0"
    assert props["disableLocalAuth"] is True
    assert props["minimumTlsVersionAllowed"] == "1.2"
    assert config["identity"] == {"type": "SystemAssigned"}  # dead-lettering through its own identity
    # public: the Flex Consumption app has no virtual network; the skip carries that reason on its line
    assert props["publicNetworkAccess"] == "Enabled"
    skip = re.search(r"// checkov:skip=CKV_AZURE_193:(.+)", EVENTS.read_text(encoding="utf-8"))
    assert skip and "public endpoint" in skip.group(1) and "virtual network" in skip.group(1)


def test_the_storage_identity_is_the_only_publisher_on_the_topic_only():
    (assignment,) = [
        res
        for res in resources_of_type(EVENTS, "Microsoft.Authorization/roleAssignments").values()
        if "eventGridDataSenderRoleId" in json.dumps(body(res)["properties"]["roleDefinitionId"])
    ]
    config = body(assignment)
    assert config["scope"] == "topic" and config["properties"]["principalId"] == "publisherPrincipalId"
    assert variable(EVENTS, "eventGridDataSenderRoleId") == "d5a91429-5739-47e2-a06b-3470a27159e7"
    # the same identity whose client id AzureWebJobsStorage__clientId names
    passed = json.dumps(body(module_named("callEvents"))["params"]["publisherPrincipalId"])
    assert '"apiUserAssignedIdentity"' in passed and '"principalId"' in passed
    assert app_settings()["AzureWebJobsStorage__clientId"] == ["identityClientId"]
    assert '"apiUserAssignedIdentity"' in json.dumps(body(module_named("api"))["params"]["identityClientId"])


def test_the_endpoint_setting_and_output_are_filled_only_when_the_topic_exists():
    (setting,) = app_settings()["CALL_EVENTS_TOPIC_ENDPOINT"]
    operands = setting["operator"]["operands"]
    assert operands["condition"] == "callEventsTopicOn" and operands["false_value"] == ""
    assert "callEvents" in json.dumps(operands["true_value"]) and "endpoint" in json.dumps(operands["true_value"])
    outputs = parse(MAIN)["outputs"]
    for name in ("CALL_EVENTS_TOPIC_ENDPOINT", "CALL_EVENTS_TOPIC_NAME", "CALL_EVENTS_DEADLETTER_CONTAINER_NAME"):
        value = outputs[name]["value"]["operator"]["operands"]
        assert value["condition"] == "callEventsTopicOn" and value["false_value"] == "", name
    assert "callEventsQueueName" in json.dumps(outputs["CALL_EVENTS_QUEUE_NAME"])
    assert "CALL_EVENTS_TOPIC_KEY" not in app_settings()  # the topic refuses keys
    events_outputs = parse(EVENTS)["outputs"]
    assert json.dumps(events_outputs["endpoint"]["value"]).count("endpoint") == 1


def test_the_webhook_subscription_delivers_cloudevents_retries_and_dead_letters_through_the_topic_identity():
    sub = subscription()
    assert condition(sub) == "withWebhook"
    config = body(sub)
    assert config["parent"] == "topic" and config["dependsOn"] == ["deadLetterAssignment"]
    props = config["properties"]
    assert props["eventDeliverySchema"] == "CloudEventSchemaV1_0"
    assert props["destination"]["endpointType"] == "WebHook"
    assert props["destination"]["properties"]["endpointUrl"] == "webhookUrl"
    assert props["filter"] == {"includedEventTypes": ["callkeeper.callEnded"]}
    assert props["retryPolicy"] == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    for name, default, low, high in (("maxDeliveryAttempts", 30, 1, 30), ("eventTimeToLiveInMinutes", 1440, 1, 1440)):
        limits = {d["type"]: d["argument"] for d in param(EVENTS, name)["decorators"]}
        assert param(EVENTS, name)["default"] == default
        assert (limits["min_value"], limits["max_value"]) == (low, high), name
    # dead letters with the topic's identity, never with Event Grid's own (the account refuses shared keys)
    assert "deadLetterDestination" not in props and "deliveryWithResourceIdentity" not in props
    dead = props["deadLetterWithResourceIdentity"]
    assert dead["identity"] == {"type": "SystemAssigned"}
    assert dead["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"
    assert "storage" in json.dumps(dead["deadLetterDestination"]["properties"]["resourceId"])
    (container,) = resources_of_type(EVENTS, "Microsoft.Storage/storageAccounts/blobServices/containers").values()
    assert condition(container) == "withWebhook" and body(container)["properties"]["publicAccess"] == "None"
    assert json.dumps(variable(EVENTS, "withWebhook")).count("webhookUrl") == 1


def test_the_event_queues_join_the_storage_account_and_the_poison_alert():
    operations = body(module_named("operations"))["params"]
    assert "callEventsQueueName" in json.dumps(operations["callEventsQueueName"])
    poison = json.dumps(variable(ROOT / "infra" / "core" / "monitor" / "operations.bicep", "poisonQuery"))
    assert "/call-events-poison/" in poison and "callEventsQueueName" in poison


def test_the_deploy_doc_says_the_webhook_must_answer_the_validation_handshake():
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "CALL_EVENTS_WEBHOOK_URL" in text and "CALL_EVENTS_TOPIC_ENABLED" in text
    assert "WebHook-Allowed-Origin" in text and "handshake" in text
    assert "running" in text.split("handshake", 1)[1][:600]
