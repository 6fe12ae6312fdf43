"""Confirm-then-send (issue 13 point 3), the hub's half: when a binding is confirmed or ended through the
relative's node, the giver's node is told at once, over its internal API, before the hub answers; the
`wallet.binding.changed.v1` event that follows then finds nothing newer. So the giver's transfers and quota are
accepted right after a confirm answered ACTIVE and refused right after an end answered ENDED, without the giver's
node asking the hub on every transfer (which halved the node's accept rate in `yibao bench transfers`).

A giver's node that cannot be reached is not waited for: the change is committed at the hub, the event reaches
that node when it is back, a confirm is still seen at once (the node asks the hub whenever its replica says
anything but ACTIVE: province_node/service_layer/binding_freshness.py), and a transfer on a binding the hub knows
ended is refunded by the hub."""

from __future__ import annotations

import logging
from typing import Any

from services.national_hub.service_layer.context import HubContext
from shared.contracts.events import BindingSnapshot
from shared.errors import ApiError

log = logging.getLogger("yibao.hub.bindings")
APPLY_PATH = "/internal/v1/bindings:apply"


async def tell_the_giver(ctx: HubContext, acting_psn_no: str, answer: dict[str, Any]) -> None:
    """After a confirm or an end committed: the snapshot to the giver's node, unless that node is the caller's
    (it applies the answer itself)."""
    snapshot = BindingSnapshot.model_validate(answer["binding"])
    acting_admdvs = snapshot.giver_admdvs if acting_psn_no == snapshot.giver_psn_no else snapshot.relative_admdvs
    if ctx.nodes is None or acting_admdvs == snapshot.giver_admdvs:
        return
    try:
        await ctx.nodes.post(snapshot.giver_admdvs, APPLY_PATH, {"binding": answer["binding"]})
    except ApiError as exc:
        log.warning("binding %s is %s, but the giver's node %s was not told at once (%s); the event will tell it",
                    snapshot.binding_id, snapshot.state, snapshot.giver_admdvs, exc.code)
