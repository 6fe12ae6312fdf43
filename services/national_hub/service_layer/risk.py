"""Risk rules at run time (API.md "Supervision"): operators' settings of the built-in rules, and their evaluation
on the hub from the events it receives: transfers as they arrive (before routing, so a `hold` rule can keep one
HELD), bindings as they become active, settlements as the gateway reports them. Alerts are raised in the same
transaction as the event that caused them; `ref` is unique per cause, so a redelivered event raises nothing twice.

Settlements are only ever alerted (a patient at a till never waits for the hub: the gateway reports them through
its outbox after answering)."""

from __future__ import annotations

import json
import time
import uuid
import weakref
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters import binding_repo
from services.national_hub.adapters.ops_tables import RiskAlert, RiskRuleSetting, SupervisedSettlement
from services.national_hub.adapters.transfer_repo import ArrivalFacts
from services.national_hub.domain import risk_rules
from services.national_hub.domain.risk_rules import RuleConfigError, RuleSetting
from services.national_hub.service_layer.context import HubContext
from shared.clock import iso
from shared.db import ByKeys, Database, Prepared, ReadView, UnitOfWork
from shared.errors import ApiError
from shared.regions import province_of
from shared.tables import table

ALERTS = table(RiskAlert)
SETTINGS = table(RiskRuleSetting)
SETTLEMENTS = table(SupervisedSettlement)

_ALL_SETTINGS = Prepared(sa.select(SETTINGS))
_ALERT_BY_REF = Prepared(sa.select(ALERTS.c.alert_id).where(ALERTS.c.ref == sa.bindparam("ref")))
_ALERTS_BY_REFS = ByKeys(ALERTS.c.ref, ALERTS.c.ref)
_NEW_ALERT = Prepared(sa.insert(ALERTS))
_PENDING_ALERTS = "risk.pending_alerts"  # UnitOfWork.state: alerts raised in this transaction, written at commit


class _SettingsCache:
    """The rules' settings as last read, for at most `TTL_S`: every transfer and settlement consults them, and
    they change only when an operator says so. A change made through this process is seen at once (put_rule
    clears the cache); one made through another replica within TTL_S."""

    TTL_S = 1.0

    def __init__(self) -> None:
        self.value: dict[str, RuleSetting] | None = None
        self.read_at = 0.0

    def fresh(self) -> dict[str, RuleSetting] | None:
        if self.value is not None and time.monotonic() - self.read_at < self.TTL_S:
            return self.value
        return None

    def keep(self, value: dict[str, RuleSetting]) -> None:
        self.value, self.read_at = value, time.monotonic()

    def clear(self) -> None:
        self.value = None


# One cache per database (tests run several federations in one process).
_CACHES: weakref.WeakKeyDictionary[Database, _SettingsCache] = weakref.WeakKeyDictionary()


def _cache(ctx: HubContext) -> _SettingsCache:
    cache = _CACHES.get(ctx.db)
    if cache is None:
        cache = _CACHES[ctx.db] = _SettingsCache()
    return cache


async def rule_settings(ctx: HubContext, uow: UnitOfWork) -> dict[str, RuleSetting]:
    """The settings events are judged by: at most _SettingsCache.TTL_S old."""
    cache = _cache(ctx)
    hit = cache.fresh()
    if hit is None:
        hit = await settings(uow)
        cache.keep(hit)
    return hit


async def settings(view: UnitOfWork | ReadView) -> dict[str, RuleSetting]:
    """Every built-in rule's setting: the stored one, else the defaults."""
    stored = {row.rule_id: row for row in (await view.execute(_ALL_SETTINGS)).all()}
    out: dict[str, RuleSetting] = {}
    for rule_id in risk_rules.RULES:
        row = stored.get(rule_id)
        out[rule_id] = (risk_rules.default_setting(rule_id) if row is None else
                        risk_rules.stored_setting(rule_id, bool(row.enabled), row.action,
                                                  json.loads(row.params_json)))
    return out


def rule_view(rule: RuleSetting) -> dict[str, Any]:
    return {"rule_id": rule.rule_id, "enabled": rule.enabled, "action": rule.action, "params": dict(rule.params),
            "description": risk_rules.RULES[rule.rule_id].description}


async def list_rules(view: ReadView) -> list[dict[str, Any]]:
    return [rule_view(rule) for rule in (await settings(view)).values()]


async def put_rule(ctx: HubContext, uow: UnitOfWork, rule_id: str, body: Any) -> dict[str, Any]:
    if rule_id not in risk_rules.RULES:
        raise ApiError(404, "RULE_NOT_FOUND", f"no built-in rule {rule_id!r}")
    if not isinstance(body, dict):
        raise ApiError(422, "VALIDATION_ERROR", "the body is an object {enabled?, action?, params?}")
    await uow.lock_name(f"risk-rule|{rule_id}")  # two operators' changes apply one after the other
    current = (await settings(uow))[rule_id]
    try:
        changed = risk_rules.apply_change(current, body)
    except RuleConfigError as exc:
        raise ApiError(422, exc.code, exc.message) from exc
    values = {"enabled": changed.enabled, "action": changed.action,
              "params_json": json.dumps(dict(changed.params), sort_keys=True), "updated_at": ctx.clock.now()}
    updated = await uow.execute(sa.update(SETTINGS).where(SETTINGS.c.rule_id == rule_id).values(**values))
    if updated.rowcount == 0:
        await uow.execute(sa.insert(SETTINGS).values(rule_id=rule_id, **values))
    cache = _cache(ctx)
    cache.clear()

    async def clear_again() -> None:  # as it commits: a read meanwhile must not keep the old value
        cache.clear()

    uow.before_commit(clear_again)
    return rule_view(changed)


# ------------------------------------------------------------------------------------------------- alerts


async def raise_alert(ctx: HubContext, uow: UnitOfWork, *, rule_id: str, subject_key: str,
                      subject: dict[str, Any], ref: str, detail: dict[str, Any],
                      held_transfer_id: str | None = None) -> str | None:
    """One alert per cause (`ref`); the new alert's id, or None when that cause already raised one."""
    if (await uow.execute(_ALERT_BY_REF, {"ref": ref})).first():
        return None
    alert_id = "A" + uuid.uuid4().hex
    await uow.execute(_NEW_ALERT, {
        "alert_id": alert_id, "rule": rule_id, "subject": subject_key[:64], "ref": ref,
        "details_json": json.dumps(detail, ensure_ascii=False, sort_keys=True), "state": "OPEN",
        "created_at": ctx.clock.now(), "subject_json": json.dumps(subject, ensure_ascii=False, sort_keys=True),
        "held_transfer_id": held_transfer_id})
    return alert_id


def queue_alert(ctx: HubContext, uow: UnitOfWork, *, rule_id: str, subject_key: str, subject: dict[str, Any],
                ref: str, detail: dict[str, Any], held_transfer_id: str | None = None) -> None:
    """`raise_alert` for the rules whose alerts nothing reads back in the same transaction: the alerts of one
    transaction (a consumer's batch) are written as it commits, with one look-up of the refs that already
    raised one and one insert (issue 9: two round trips per alert before)."""
    pending: dict[str, dict[str, Any]] | None = uow.state.get(_PENDING_ALERTS)
    if pending is None:
        pending = uow.state[_PENDING_ALERTS] = {}
        alerts = pending
        uow.before_commit(lambda: _write_alerts(uow, alerts))
    if ref in pending:
        return
    pending[ref] = {
        "alert_id": "A" + uuid.uuid4().hex, "rule": rule_id, "subject": subject_key[:64], "ref": ref,
        "details_json": json.dumps(detail, ensure_ascii=False, sort_keys=True), "state": "OPEN",
        "created_at": ctx.clock.now(), "subject_json": json.dumps(subject, ensure_ascii=False, sort_keys=True),
        "held_transfer_id": held_transfer_id}


async def _write_alerts(uow: UnitOfWork, pending: dict[str, dict[str, Any]]) -> None:
    raised = {row.ref for row in await _ALERTS_BY_REFS.rows(uow, list(pending))}
    rows = [alert for ref, alert in pending.items() if ref not in raised]
    pending.clear()
    for row in rows:  # with the transaction's other deferred rows, in one statement (UnitOfWork.defer)
        uow.defer(_NEW_ALERT, row)


# -------------------------------------------------------------------------------------------- transfers


def transfer_count_since(rules: dict[str, RuleSetting], accepted_at: datetime) -> datetime:
    """Where the frequency rule's window starts for a transfer accepted at `accepted_at` (it ends there)."""
    return accepted_at - rules[risk_rules.HIGH_FREQUENCY_TRANSFERS].window()


def judge_transfer(rules: dict[str, RuleSetting], msg: Any, binding: Any, facts: ArrivalFacts
                   ) -> list[tuple[RuleSetting, dict[str, Any]]]:
    """The rules a transfer that just arrived trips, each with its evidence. `facts` were read before the
    transfer's own row was written, over the window `transfer_count_since` gives (so the counts add one for it)."""
    fired: list[tuple[RuleSetting, dict[str, Any]]] = []
    frequent = rules[risk_rules.HIGH_FREQUENCY_TRANSFERS]
    if frequent.enabled:
        from_giver, to_receiver = facts.from_giver + 1, facts.to_receiver + 1
        if risk_rules.high_frequency_transfers(frequent, from_giver, to_receiver):
            fired.append((frequent, {"from_giver_in_window": from_giver, "to_receiver_in_window": to_receiver,
                                     "window_min": frequent.param("window_min"),
                                     "max_count": frequent.param("max_count")}))
    young = rules[risk_rules.NEW_BINDING_LARGE_TRANSFER]
    if young.enabled and binding is not None and risk_rules.new_binding_large_transfer(
            young, binding.created_at, msg.accepted_at, msg.amount_fen):
        fired.append((young, {"amount_fen": msg.amount_fen, "binding_created_at": iso(binding.created_at),
                              "binding_age_h": young.param("binding_age_h"),
                              "min_amount_fen": young.param("min_amount_fen")}))
    return fired


async def alert_transfer(ctx: HubContext, uow: UnitOfWork, msg: Any,
                         fired: list[tuple[RuleSetting, dict[str, Any]]], held_by: RuleSetting | None) -> None:
    for rule, evidence in fired:
        holds = held_by is not None and rule.rule_id == held_by.rule_id
        queue_alert(
            ctx, uow, rule_id=rule.rule_id, subject_key=msg.giver_psn_no,
            subject={"psn_no": msg.giver_psn_no, "binding_id": msg.binding_id},
            ref=f"{rule.rule_id}:{msg.transfer_id}",
            detail={"transfer_id": msg.transfer_id, "amount_fen": msg.amount_fen,
                    "giver_psn_no": msg.giver_psn_no, "giver_admdvs": msg.giver_admdvs,
                    "receiver_psn_no": msg.receiver_psn_no, "receiver_admdvs": msg.receiver_admdvs,
                    "action": rule.action, **evidence},
            held_transfer_id=msg.transfer_id if holds else None)


# --------------------------------------------------------------------------------------------- bindings


async def on_binding_active(ctx: HubContext, uow: UnitOfWork, binding: Any) -> None:
    """MANY_GIVERS_ONE_RELATIVE (虚假亲属): when a binding becomes active, how many active bindings make its
    relative someone's relative?"""
    rule = (await rule_settings(ctx, uow))[risk_rules.MANY_GIVERS_ONE_RELATIVE]
    if not rule.enabled:
        return
    givers = await binding_repo.active_givers_of(uow, binding.relative_psn_no)
    if risk_rules.many_givers_one_relative(rule, givers):
        await raise_alert(ctx, uow, rule_id=rule.rule_id, subject_key=binding.relative_psn_no,
                          subject={"psn_no": binding.relative_psn_no, "binding_id": binding.binding_id,
                                   "name_masked": binding.relative_name_masked},
                          ref=f"{rule.rule_id}:{binding.binding_id}",
                          detail={"active_givers": givers, "max_givers": rule.param("max_givers"),
                                  "binding_id": binding.binding_id, "giver_psn_no": binding.giver_psn_no})


# ------------------------------------------------------------------------------------------- settlements


_S = SETTLEMENTS.c
_IN_EFFECT = _S.cancelled.is_(False)
# The person's settlements in effect that the two person rules look at, counted in one statement for both (issue
# 9: one round trip per settlement less at the hub; and one row back, however many settlements a busy payer has in
# the windows): those at this institution in SPLIT_PURCHASES' window up to this one (`split_count`), and the
# first and last province of those anywhere in DISTANT_PAYMENTS' window around it (two provinces or more when
# they differ). A disabled rule's window is empty.
_SPLIT_WINDOW = sa.and_(_S.fixmedins_code == sa.bindparam("inst"), _S.settled_at > sa.bindparam("split_since"),
                        _S.settled_at <= sa.bindparam("at"))
_DISTANT_WINDOW = sa.and_(_S.settled_at > sa.bindparam("distant_since"), _S.settled_at < sa.bindparam("distant_until"))
_PROVINCE_DIGITS = sa.func.substr(_S.institution_admdvs, 1, 2)  # regions.province_of without its zeros
_PERSON_WINDOWS = Prepared(sa.select(
    sa.func.count().filter(_SPLIT_WINDOW).label("split_count"),
    sa.func.min(_PROVINCE_DIGITS).filter(_DISTANT_WINDOW).label("first_province"),
    sa.func.max(_PROVINCE_DIGITS).filter(_DISTANT_WINDOW).label("last_province"),
).where(_S.psn_no == sa.bindparam("psn"), _IN_EFFECT, sa.or_(_SPLIT_WINDOW, _DISTANT_WINDOW)))
# Only when DISTANT_PAYMENTS fires: the regions of those settlements, for the alert's detail.
_DISTANT_REGIONS = Prepared(sa.select(_S.institution_admdvs).distinct().where(
    _S.psn_no == sa.bindparam("psn"), _IN_EFFECT, _DISTANT_WINDOW))
_PAYERS_AT = Prepared(sa.select(sa.func.count(sa.distinct(_S.psn_no))).where(
    _S.fixmedins_code == sa.bindparam("inst"), _IN_EFFECT, _S.settled_at > sa.bindparam("since"),
    _S.settled_at <= sa.bindparam("until"), (_S.wallet_pay_fen + _S.quota_pay_fen) > 0))
_RECENT_ALERT = Prepared(sa.select(ALERTS.c.alert_id).where(
    ALERTS.c.rule == sa.bindparam("rule"), ALERTS.c.subject == sa.bindparam("subject"),
    ALERTS.c.created_at > sa.bindparam("since")).limit(1))


async def on_settlement(ctx: HubContext, uow: UnitOfWork, row: Any) -> None:
    """The settlement rules, for a settlement that has just taken effect (row of supervised_settlements)."""
    rules = await rule_settings(ctx, uow)
    payer_province, institution_province = province_of(row.payer_admdvs), province_of(row.institution_admdvs)
    subject = {"psn_no": row.psn_no, "fixmedins_code": row.fixmedins_code}
    base = {"setl_id": row.setl_id, "fixmedins_code": row.fixmedins_code,
            "institution_admdvs": row.institution_admdvs, "payer_admdvs": row.payer_admdvs,
            "use": row.use, "settled_at": iso(row.settled_at)}
    accounts_fen = row.acct_pay_fen + row.wallet_pay_fen + row.quota_pay_fen
    large = rules[risk_rules.LARGE_REMOTE_PAYMENT]
    if large.enabled and risk_rules.large_remote_payment(large, payer_province, institution_province, accounts_fen):
        queue_alert(ctx, uow, rule_id=large.rule_id, subject_key=row.psn_no, subject=subject,
                          ref=f"{large.rule_id}:{row.setl_id}",
                          detail={**base, "accounts_fen": accounts_fen,
                                  "min_amount_fen": large.param("min_amount_fen")})
    split, distant = rules[risk_rules.SPLIT_PURCHASES], rules[risk_rules.DISTANT_PAYMENTS]
    around = distant.window() if distant.enabled else timedelta(0)
    person_params = {"psn": row.psn_no, "inst": row.fixmedins_code, "at": row.settled_at,
                     "split_since": row.settled_at - split.window() if split.enabled else row.settled_at,
                     "distant_since": row.settled_at - around, "distant_until": row.settled_at + around}
    windows = (await uow.execute(_PERSON_WINDOWS, person_params)).one() if split.enabled or distant.enabled else None
    if windows is not None and split.enabled:
        count = int(windows.split_count)
        if risk_rules.split_purchases(split, count):
            queue_alert(ctx, uow, rule_id=split.rule_id, subject_key=row.psn_no, subject=subject,
                              ref=f"{split.rule_id}:{row.setl_id}",
                              detail={**base, "settlements_in_window": count, "max_count": split.param("max_count"),
                                      "window_min": split.param("window_min")})
    if windows is not None and distant.enabled and windows.first_province != windows.last_province:
        regions = (await uow.execute(_DISTANT_REGIONS, {name: person_params[name] for name in (
            "psn", "distant_since", "distant_until")})).all()
        provinces = {province_of(region.institution_admdvs) for region in regions}
        if risk_rules.distant_payments(distant, provinces):
            queue_alert(ctx, uow, rule_id=distant.rule_id, subject_key=row.psn_no, subject=subject,
                              ref=f"{distant.rule_id}:{row.setl_id}",
                              detail={**base, "provinces": sorted(provinces),
                                      "window_min": distant.param("window_min")})
    cluster = rules[risk_rules.INSTITUTION_CLUSTER]
    if cluster.enabled and row.wallet_pay_fen + row.quota_pay_fen > 0:
        await _institution_cluster(ctx, uow, cluster, row, base)


async def _institution_cluster(ctx: HubContext, uow: UnitOfWork, rule: RuleSetting, row: Any,
                               base: dict[str, Any]) -> None:
    """聚集性购药: one alert per institution per window, however many more payers follow within it (the lock
    keeps two replicas from both raising it)."""
    since: datetime = row.settled_at - rule.window()
    payers = int((await uow.execute(_PAYERS_AT, {"inst": row.fixmedins_code, "since": since,
                                                 "until": row.settled_at})).scalar_one())
    if not risk_rules.institution_cluster(rule, payers):
        return
    await uow.lock_name(f"risk|{rule.rule_id}|{row.fixmedins_code}")
    recent = (await uow.execute(_RECENT_ALERT, {"rule": rule.rule_id, "subject": row.fixmedins_code,
                                                "since": ctx.clock.now() - rule.window()})).first()
    if recent is not None:
        return
    await raise_alert(ctx, uow, rule_id=rule.rule_id, subject_key=row.fixmedins_code,
                      subject={"fixmedins_code": row.fixmedins_code}, ref=f"{rule.rule_id}:{row.setl_id}",
                      detail={**base, "distinct_payers_in_window": payers, "min_persons": rule.param("min_persons"),
                              "window_min": rule.param("window_min")})
