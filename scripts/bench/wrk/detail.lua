-- GET /api/v1/products/{id}, id uniform over the seeded products.
local products
function scenario_init() products = knob("BENCH_PRODUCTS", 1000) end
function request()
  return wrk.format("GET", "/api/v1/products/" .. math.random(1, products))
end
