"""A whole shop flow through a Python client generated from the served OpenAPI document.

Run by scripts/client-flow.sh, which starts a fresh server, generates the client package
(openapi-python-client) from its /openapi.json and runs this file with the package on
sys.path. Every call goes through the generated code: operation modules named after the
operationIds, request models, typed responses and typed problems. Responses the document
does not list raise (raise_on_unexpected_status), the generated models refuse bodies
that miss a required field or carry an undeclared enum value, and every JSON response is
also validated against the schema the document gives for its operation and status.
"""

import importlib
import json
import os
import re
import sys
import uuid
from datetime import datetime, timedelta, timezone

import jsonschema_rs

PACKAGE = sys.argv[1] if len(sys.argv) > 1 else "shop_client"
DOCUMENT = sys.argv[2] if len(sys.argv) > 2 else "openapi.json"
BASE_URL = os.environ["SHOP_URL"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]


class Conformance:
    """Validates each response against the document: its status must be listed for the
    operation, and a JSON body must fit that status's schema."""

    def __init__(self, document):
        self.document = document
        self.routes = []
        for template, item in document["paths"].items():
            pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$")
            self.routes.append((pattern, item))
        self.checked = 0
        self.violations = []

    def __call__(self, response):
        response.read()
        request = response.request
        operation = next(
            (item.get(request.method.lower()) for pattern, item in self.routes if pattern.match(request.url.path)),
            None,
        )
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        if operation is None:
            self.violations.append(f"{where}: no such operation in the document")
            return
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            self.violations.append(f"{where}: status not documented")
            return
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        content = documented.get("content", {}).get(media_type)
        if content is None:
            if response.content:
                self.violations.append(f"{where}: {media_type} not documented")
            return
        if "json" not in media_type:
            return
        schema = dict(content["schema"], components=self.document["components"])
        errors = [e.message for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(response.json())]
        if errors:
            self.violations.append(f"{where}: {errors[:3]}")
        self.checked += 1

passed = 0
failed = 0


def module(name):
    return importlib.import_module(f"{PACKAGE}.{name}")


def op(tag, operation_id):
    """The generated module of one operation (snake case of its operationId)."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in operation_id)
    return module(f"api.{tag}.{snake}")


def step(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every step, fail at the end
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    else:
        passed += 1
        print(f"ok   {name}")


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    client_mod = module("client")
    models = module("models")
    with open(DOCUMENT, encoding="utf-8") as f:
        conformance = Conformance(json.load(f))
    hooks = {"event_hooks": {"response": [conformance]}}
    client = client_mod.Client(base_url=BASE_URL, raise_on_unexpected_status=True, httpx_args=hooks)
    admin = client_mod.AuthenticatedClient(
        base_url=BASE_URL, token=ADMIN_TOKEN, raise_on_unexpected_status=True, httpx_args=hooks
    )
    run = uuid.uuid4().hex[:12]
    s = {}

    def create_user():
        user = op("users", "createUser").sync(client=client)
        expect(isinstance(user, models.UserResponse), f"a UserResponse, got {user!r}")
        again = op("users", "getUser").sync(client=client, id=user.id)
        expect(again.id == user.id and again.created_at == user.created_at, "the same user")
        s["user"] = user.id

    def charge():
        body = models.ChargeRequest(user_id=s["user"], amount=50_000)
        charge_points = op("points", "chargePoints")
        first = charge_points.sync(client=client, body=body, idempotency_key=f"charge-{run}")
        expect(isinstance(first, models.BalanceResponse) and first.balance == 50_000, repr(first))
        # The same key and body again: replayed, not charged twice.
        replay = charge_points.sync_detailed(client=client, body=body, idempotency_key=f"charge-{run}")
        expect(replay.headers.get("idempotent-replayed") == "true", "a replay")
        expect(replay.parsed.balance == 50_000, repr(replay.parsed))
        balance = op("points", "getBalance").sync(client=client, user_id=s["user"])
        expect(balance.balance == 50_000, repr(balance))

    def create_product():
        body = models.CreateProductRequest(name=f"Flow mug {run}", description="350 ml", price=12_000, stock=10)
        product = op("admin", "adminCreateProduct").sync(client=admin, body=body)
        expect(isinstance(product, models.ProductResponse), repr(product))
        expect((product.price, product.stock) == (12_000, 10), repr(product))
        restocked = op("admin", "adminRestockProduct").sync(
            client=admin, id=product.id, body=models.RestockRequest(quantity=5)
        )
        expect(restocked.stock == 15, repr(restocked))
        renamed = op("admin", "adminUpdateProduct").sync(
            client=admin, id=product.id, body=models.PatchProductRequest(name=f"Flow mug {run} (blue)")
        )
        expect(renamed.name.endswith("(blue)") and renamed.price == 12_000, repr(renamed))
        s["product"] = product.id

    def create_coupon():
        body = models.CreateCouponRequest(
            name=f"Flow 3,000 off {run}",
            discount_type=models.CreateCouponRequestDiscountType.FIXED,
            discount_value=3_000,
            total_quantity=5,
            ends_at=datetime.now(timezone.utc) + timedelta(days=1),
        )
        coupon = op("admin", "adminCreateCoupon").sync(client=admin, body=body)
        expect(isinstance(coupon, models.CouponResponse), repr(coupon))
        expect(coupon.discount_type == models.DiscountType.FIXED and coupon.remaining_quantity == 5, repr(coupon))
        s["coupon"] = coupon.id

    def issue_coupon():
        body = models.IssueRequest(user_id=s["user"], coupon_id=s["coupon"])
        issued = op("coupons", "issueCoupon").sync(client=client, body=body, idempotency_key=f"issue-{run}")
        expect(isinstance(issued, models.UserCouponResponse), repr(issued))
        expect(issued.status == models.UserCouponStatusDto.AVAILABLE, repr(issued))
        coupon = op("coupons", "getCoupon").sync(client=client, coupon_id=s["coupon"])
        expect(coupon.remaining_quantity == 4, repr(coupon))
        s["user_coupon"] = issued.id

    def place_order():
        body = models.PlaceOrderRequest(
            user_id=s["user"],
            items=[models.OrderItemRequest(product_id=s["product"], quantity=2)],
            user_coupon_id=s["user_coupon"],
        )
        order = op("orders", "placeOrder").sync(client=client, body=body, idempotency_key=f"order-{run}")
        expect(isinstance(order, models.OrderResponse), repr(order))
        expect(order.status == models.OrderStatusDto.NOT_PAID, repr(order))
        expect((order.total_amount, order.discount_amount, order.pay_amount) == (24_000, 3_000, 21_000), repr(order))
        expect([(line.product_id, line.quantity) for line in order.items] == [(s["product"], 2)], repr(order.items))
        s["order"] = order.id

    def pay():
        body = models.PayRequest(user_id=s["user"], order_id=s["order"])
        paid = op("points", "payOrder").sync(client=client, body=body, idempotency_key=f"pay-{run}")
        expect(isinstance(paid, models.PaymentResponse), repr(paid))
        expect((paid.paid_amount, paid.balance) == (21_000, 29_000), repr(paid))
        order = op("orders", "getOrder").sync(client=client, id=s["order"], user_id=s["user"])
        expect(order.status == models.OrderStatusDto.PAID and order.paid_at is not None, repr(order))

    def history():
        page = op("points", "listPointHistory").sync(client=client, user_id=s["user"], size=10)
        expect(page.total_count == 2, repr(page))
        got = [(item.type_, item.amount, item.balance_after, item.order_id) for item in page.items]
        expect(got == [
            (models.PointKindDto.USE, 21_000, 29_000, s["order"]),
            (models.PointKindDto.CHARGE, 50_000, 50_000, None),
        ], repr(got))
        orders = op("orders", "listOrders").sync(client=client, user_id=s["user"])
        expect([o.id for o in orders.items] == [s["order"]], repr(orders))
        coupons = op("coupons", "listUserCoupons").sync(client=client, user_id=s["user"])
        expect([c.status for c in coupons.items] == [models.UserCouponStatusDto.USED], repr(coupons))

    def product_pages():
        list_products = op("products", "listProducts")
        numbered = list_products.sync(client=client, size=1)
        expect(isinstance(numbered, models.PageDtoProductResponse), f"a numbered page, got {numbered!r}")
        keyset = list_products.sync(client=client, after=s["product"] - 1, size=1)
        expect(isinstance(keyset, models.ProductsAfterDto), f"a keyset page, got {keyset!r}")
        expect([p.id for p in keyset.items] == [s["product"]], repr(keyset))

    def best_sellers():
        op("admin", "adminRefreshBestSellers").sync(client=admin)
        best = op("products", "getBestSellers").sync(client=client)
        expect(isinstance(best, models.BestSellersResponse), repr(best))
        expect(any(i.product_id == s["product"] and i.sales_quantity == 2 for i in best.items), repr(best))

    def refusals():
        # A refused request comes back as the typed problem its status documents.
        again = op("points", "payOrder").sync(
            client=client, body=models.PayRequest(user_id=s["user"], order_id=s["order"])
        )
        expect(isinstance(again, models.Problem), f"a Problem, got {again!r}")
        expect((again.status, again.code) == (409, "ORDER_NOT_PAYABLE"), repr(again))
        invalid = op("points", "chargePoints").sync(
            client=client, body=models.ChargeRequest(user_id=s["user"], amount=0)
        )
        expect(isinstance(invalid, models.Problem) and invalid.code == "VALIDATION_FAILED", repr(invalid))
        expect([e.field for e in invalid.errors] == ["amount"], repr(invalid.errors))
        missing = op("users", "getUser").sync(client=client, id=2**62)
        expect(isinstance(missing, models.Problem) and missing.code == "USER_NOT_FOUND", repr(missing))
        anonymous = op("admin", "adminOutboxCounts").sync(client=client)
        expect(isinstance(anonymous, models.Problem) and anonymous.status == 401, repr(anonymous))

    for name, fn in [
        ("create a user", create_user),
        ("charge points (and replay the charge)", charge),
        ("create, restock and rename a product (admin)", create_product),
        ("create a coupon (admin)", create_coupon),
        ("issue the coupon", issue_coupon),
        ("order with the coupon", place_order),
        ("pay the order", pay),
        ("read the point history, orders and coupons", history),
        ("list products by page and by keyset", product_pages),
        ("best sellers after a refresh (admin)", best_sellers),
        ("refusals as typed problems", refusals),
    ]:
        if failed:
            print(f"skip {name}")
            continue
        step(name, fn)

    def responses_fit_the_document():
        expect(conformance.checked >= 20, f"only {conformance.checked} responses checked")
        expect(not conformance.violations, "\n".join(conformance.violations))

    if not failed:
        step(f"every response fits the document ({conformance.checked} checked)", responses_fit_the_document)
    print(f"flow: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
