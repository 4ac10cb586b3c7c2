-- Order + pay, k = 2 HTTP requests per operation: POST /api/v1/orders (random user,
-- one line of a random product, quantity 1..3), then POST /api/v1/points/use with the
-- order id from the 201 response. Orders waiting to be paid are kept per thread; a
-- connection whose response was an order pays one next, so at most one order per
-- connection is left unpaid when the run stops. ops = payments answered 200.
local users, products
local pending = {}
ops = 0
function scenario_init()
  users = knob("BENCH_USERS", 10000)
  products = knob("BENCH_PRODUCTS", 1000)
end
function request()
  local p = table.remove(pending)
  if p then
    return wrk.format("POST", "/api/v1/points/use", json_headers,
      '{"userId":' .. p[1] .. ',"orderId":' .. p[2] .. '}')
  end
  local body = '{"userId":' .. math.random(1, users) .. ',"items":[{"productId":'
    .. math.random(1, products) .. ',"quantity":' .. math.random(1, 3) .. '}]}'
  return wrk.format("POST", "/api/v1/orders", json_headers, body)
end
function response(status, headers, body)
  if status == 201 then
    local id, user = body:match('"id":(%d+)'), body:match('"userId":(%d+)')
    if id and user then table.insert(pending, { user, id }) end
  elseif status == 200 then
    ops = ops + 1
  end
end
