-- POST /api/v1/points/charge, random user, small amount (1..1000 KRW: far from the cap),
-- no Idempotency-Key.
local users
function scenario_init() users = knob("BENCH_USERS", 10000) end
function request()
  local body = '{"userId":' .. math.random(1, users) .. ',"amount":' .. math.random(1, 1000) .. '}'
  return wrk.format("POST", "/api/v1/points/charge", json_headers, body)
end
