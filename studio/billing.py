"""What a call to a provider may have cost: the one place billing states are decided.

Every attempt ends in exactly one of three billing states (DESIGN.md, "Billing states"):

- *not billed*: the provider answered with an HTTP error, or the request was never sent;
- *billed*: the provider answered and its usage is known (priced by the price sheet, or
  unpriced when no sheet is in force), or the route has a flat price per call;
- *possibly billed*: a 200 whose content could not be used and that reported no usable
  usage, a stream that started and broke or ended early, a timeout or a dropped connection
  after the request was sent, a worker lost mid-call, a 200 whose usage is missing, zero
  or of a shape that cannot be priced.

Nothing is $0 but a provider's error answer. An attempt whose cost is not known carries an
*exposure*: the request's estimate, what it may have cost at most as far as the studio can
tell, which budgets count as committed spend and the audit shows as "possibly billed".

The state is stored through the attempt's `cost_basis` (see `BILLING_BY_BASIS`), so the
ledger, the rollups and the CSV need no second column that could disagree with it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from studio import pricing


class Billing(enum.StrEnum):
    NOT_BILLED = "not_billed"
    BILLED = "billed"
    POSSIBLY_BILLED = "possibly_billed"


BILLING_LABELS = {
    Billing.NOT_BILLED: "not billed",
    Billing.BILLED: "billed",
    Billing.POSSIBLY_BILLED: "possibly billed",
}


class Answer(enum.StrEnum):
    """How far a call got, as far as the studio can tell."""

    NOT_SENT = "not_sent"  # nothing reached the provider (connect failure, no route)
    ERROR = "error"  # the provider answered with an HTTP error status
    COMPLETE = "complete"  # a 200 whose images were all read
    INCOMPLETE = "incomplete"  # a 200 whose content was unusable, or a stream that broke
    NO_ANSWER = "no_answer"  # sent, and no answer read: timeout, lost connection, lost worker


class Basis(enum.StrEnum):
    """How an attempt's cost was worked out (`Attempt.cost_basis`)."""

    TOKENS = "tokens"  # usage x the price sheet in force
    PER_CALL = "per_call"  # the route's flat price per image
    UNPRICED = "unpriced"  # billed, but no price is known for what was reported
    NOT_BILLED = "not_billed"  # an error answer: nothing to pay
    POSSIBLY_BILLED = "possibly_billed"  # may have been billed; cost unknown, exposure kept


BILLING_BY_BASIS = {
    Basis.TOKENS: Billing.BILLED,
    Basis.PER_CALL: Billing.BILLED,
    Basis.UNPRICED: Billing.BILLED,
    Basis.NOT_BILLED: Billing.NOT_BILLED,
    Basis.POSSIBLY_BILLED: Billing.POSSIBLY_BILLED,
}


def billing_of(basis: str) -> Billing | None:
    """The billing state a stored cost basis stands for; None while the call is in flight."""
    return BILLING_BY_BASIS.get(basis) if basis else None


@dataclass(frozen=True)
class Bill:
    """The decision for one attempt: its state, its cost (None: unknown) and exposure."""

    billing: Billing
    basis: Basis
    cost: Decimal | None
    exposure: Decimal | None = None  # only when the cost is unknown: at most this much
    price_sheet: object | None = None
    note: str = ""  # why it is unpriced or possibly billed, in words


def decide(
    answer: Answer,
    *,
    usage: pricing.UsageReading | None,
    images: int,
    exposure: Decimal | None,
    price_per_call: Decimal | None = None,
    per_call: bool = False,
    sheet=None,
) -> Bill:
    """Decide what one attempt cost.

    `usage` is what the provider reported (None: nothing read); `images` how many images
    it delivered; `exposure` the request's estimate; `per_call` whether the route bills a
    flat `price_per_call` per image (None: no price set); `sheet` the price sheet in force
    for the model the provider ran (None: none known).
    """
    reported = usage is not None and usage.priceable
    if answer is Answer.NOT_SENT:
        return Bill(Billing.NOT_BILLED, Basis.NOT_BILLED, Decimal(0), note="Never sent.")
    if answer is Answer.ERROR and not (reported and not per_call):
        return Bill(Billing.NOT_BILLED, Basis.NOT_BILLED, Decimal(0), note="An error answer.")
    if answer in (Answer.COMPLETE, Answer.ERROR) or (answer is Answer.INCOMPLETE and reported):
        if per_call:
            if answer is Answer.INCOMPLETE:
                return _possibly(exposure, "The answer was unusable; the flat price may apply.")
            if price_per_call is None:
                return Bill(
                    Billing.BILLED,
                    Basis.UNPRICED,
                    None,
                    exposure,
                    note="The route has no price per call.",
                )
            return Bill(Billing.BILLED, Basis.PER_CALL, price_per_call * max(1, images))
        if not reported:
            problem = usage.problem if usage is not None else "The provider reported no usage."
            return _possibly(exposure, f"Answered 200 without usable usage: {problem}")
        if sheet is None:
            return Bill(
                Billing.BILLED,
                Basis.UNPRICED,
                None,
                exposure,
                note="No price sheet is in force for this model.",
            )
        cost = pricing.cost_of_usage(usage.usage, sheet)
        return Bill(Billing.BILLED, Basis.TOKENS, cost, price_sheet=sheet)
    if answer is Answer.INCOMPLETE:
        return _possibly(exposure, "The answer started but could not be used.")
    return _possibly(exposure, "No answer was read; the provider may have finished the call.")


def _possibly(exposure: Decimal | None, note: str) -> Bill:
    return Bill(Billing.POSSIBLY_BILLED, Basis.POSSIBLY_BILLED, None, exposure, note=note)


def may_send_again(attempts: list[tuple[str, str]], timeout_retries: int) -> bool:
    """Whether a request whose attempts so far are these (cost basis, retry reason) may be
    sent again: only while none of them may have been billed. The one exception is a call
    that timed out after it was sent (possibly billed), up to the route's `timeout_retries`
    such calls. The worker's retry policy and `ledger_check` both ask this."""
    risky = [(basis, reason) for basis, reason in attempts if may_have_billed(basis)]
    if not risky:
        return True
    if any(
        billing_of(basis) is not Billing.POSSIBLY_BILLED or reason != "timeout"
        for basis, reason in risky
    ):
        return False
    return len(risky) <= timeout_retries


def may_have_billed(basis: str) -> bool:
    """True when an attempt with this cost basis may have cost money (billed or possibly),
    or is still in flight: after such an attempt the request is never sent again
    automatically."""
    return billing_of(basis) is not Billing.NOT_BILLED
