-- GET /api/v1/products?page=N&size=20, N uniform over the seeded catalogue's pages.
local pages
function scenario_init() pages = math.max(1, math.floor(knob("BENCH_PRODUCTS", 1000) / 20)) end
function request()
  return wrk.format("GET", "/api/v1/products?page=" .. math.random(1, pages) .. "&size=20")
end
