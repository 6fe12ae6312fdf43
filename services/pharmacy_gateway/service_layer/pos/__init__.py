"""The national 两定机构 interface's use cases, one module per message family (API.md "POS API"): 9001 sign in,
1101 person, 2101/2102 purchase, 2103 cancel, 2601 reversal, 3201 reconciliation. Each parses its input into a
domain type (domain/nhsa_inputs.py), asks the payer's home node through the message log (exchange.py), and
renders its answer (domain/nhsa_output.py). Hospitals and clinics: service_layer/medical_handlers.py."""

from __future__ import annotations

from services.pharmacy_gateway.service_layer.pos.cancel import cancel
from services.pharmacy_gateway.service_layer.pos.common import Handler
from services.pharmacy_gateway.service_layer.pos.person import person
from services.pharmacy_gateway.service_layer.pos.purchase import presettle, settle
from services.pharmacy_gateway.service_layer.pos.reconcile import reconcile
from services.pharmacy_gateway.service_layer.pos.reversal import reverse
from services.pharmacy_gateway.service_layer.pos.sign_in import sign_in

HANDLERS: dict[str, Handler] = {"9001": sign_in, "1101": person, "2101": presettle, "2102": settle, "2103": cancel,
                                "2601": reverse, "3201": reconcile}

__all__ = ["HANDLERS", "Handler"]
