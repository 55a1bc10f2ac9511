"""ensure_search_attributes (common/temporal.py): a dev server whose database predates an attribute
(the server applies its `--search-attribute` flags only to a new database) gets it from the worker
or the API at start, so their starts are not refused after an upgrade."""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from common.models import SEARCH_ATTRIBUTES
from common.temporal import ensure_search_attributes
from devstack.temporal_server import dynamic_config_args
from tests.api.helpers import DEV_SERVER
from tests.support.temporal import started_again_if_a_port_was_taken


async def test_missing_attributes_are_registered_once_and_starts_then_carry_them():
    # No `--search-attribute` flags: as a database made by a Herald before HeraldTenant existed. Herald's
    # dynamic config, in which the server reads its search attributes from a cache it refreshes every
    # few seconds: an attribute added now is refused by starts until then.
    env = await started_again_if_a_port_was_taken(
        lambda: WorkflowEnvironment.start_local(
            dev_server_existing_path=str(DEV_SERVER), dev_server_extra_args=dynamic_config_args()
        )
    )
    try:
        client = env.client
        assert sorted(await ensure_search_attributes(client)) == sorted(SEARCH_ATTRIBUTES)
        assert await ensure_search_attributes(client) == []  # idempotent: nothing left to add
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        assert set(SEARCH_ATTRIBUTES) <= set(listed.custom_attributes)
        # A start carrying every one of them is accepted at once: ensure_search_attributes returned only
        # when the server's cache had them.
        handle = await client.start_workflow(
            "NoSuchWorkflow",
            id="attributes-check",
            task_queue="nobody-polls",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SearchAttributeKey.for_keyword(n), "x") for n in SEARCH_ATTRIBUTES]
            ),
        )
        await handle.terminate()
    finally:
        await env.shutdown()
