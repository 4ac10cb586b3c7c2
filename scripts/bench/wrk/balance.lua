-- GET /api/v1/points?userId=, user uniform over the seeded wallets.
local users
function scenario_init() users = knob("BENCH_USERS", 10000) end
function request()
  return wrk.format("GET", "/api/v1/points?userId=" .. math.random(1, users))
end
