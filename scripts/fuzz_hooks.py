"""Schemathesis hooks of `make fuzz` (scripts/fuzz.sh loads them).

A few rules of the server are stated in words in the OpenAPI document because JSON Schema
cannot express them (a rule between two fields). These hooks keep
the generator from sending a *schema-valid* (positive) request that breaks one of them: it
would be refused with 400 and reported as a false "schema-valid request rejected".
Negative cases are left untouched, and every check still runs on everything that is sent.
Each rule is covered by the Rust API tests.
"""

from datetime import datetime, timezone

import schemathesis
from schemathesis import GenerationMode

EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _positive(case):
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


def _instant(value):
    """The instant a date-time string names, when it is one within the years 1970–9999 UTC."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        utc = at.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
    if utc.tzinfo is None or utc < EARLIEST:
        return None
    return utc


@schemathesis.hook("filter_case")
def no_null_path_parameters(ctx, case):
    # The stateful phase fills path parameters from fields of earlier responses; a field
    # that is null there (a CHARGE row's `orderId`) would make `/orders/None/cancel`, which
    # is no integer and no schema-valid request.
    params = case.path_parameters or {}
    return not (_positive(case) and any(v is None or v == "None" for v in params.values()))


@schemathesis.hook("filter_case").apply_to(method="GET", path="/api/v1/products")
def page_or_after(ctx, case):
    # `page` (numbered pages) and `after` (keyset pages) are two ways to page: both is 400.
    query = case.query or {}
    return not (_positive(case) and "page" in query and "after" in query)


@schemathesis.hook("filter_case").apply_to(method="POST", path="/api/v1/orders")
def merged_quantities(ctx, case):
    # Lines of one product are merged; a merged quantity above 1,000 is 400.
    body = case.body
    if not (_positive(case) and isinstance(body, dict) and isinstance(body.get("items"), list)):
        return True
    totals = {}
    for line in body["items"]:
        if isinstance(line, dict) and isinstance(line.get("productId"), (int, float)):
            totals[line["productId"]] = totals.get(line["productId"], 0) + line.get("quantity", 0)
    return all(total <= 1000 for total in totals.values())


@schemathesis.hook("map_case").apply_to(method="POST", path="/api/v1/admin/coupons")
def coupon_window(ctx, case):
    # endsAt must be after startsAt (after now without it), both in the years 1970–9999 UTC.
    # Most random pairs are not, so a schema-valid case gets a window that is.
    body = case.body
    if not (_positive(case) and isinstance(body, dict)):
        return case
    has_start = body.get("startsAt") is not None
    starts = _instant(body["startsAt"]) if has_start else datetime.now(timezone.utc)
    ends = _instant(body.get("endsAt"))
    if starts is None or ends is None or ends <= starts:
        # A new dict: generated cases may share the one they were built from.
        body = dict(body, endsAt="9000-01-01T00:00:00Z")
        if has_start:
            body["startsAt"] = "2000-01-01T00:00:00Z"
        case.body = body
    return case
