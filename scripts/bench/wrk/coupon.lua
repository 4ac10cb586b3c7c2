-- POST /api/v1/coupons/issue of one hot coupon, every request by a user never seen
-- before: thread t takes users first + t*span + 1, + 2, ... (span = range / threads).
-- Past its span a thread would repeat no one but hit unknown users (404s, counted).
local coupon, first, span, n = 0, 0, 0, 0
function scenario_init()
  coupon = knob("BENCH_COUPON_ID", 1)
  first = knob("BENCH_COUPON_FIRST_USER", 1) - 1
  span = math.floor(knob("BENCH_COUPON_USERS", 400000) / knob("BENCH_THREADS", 2))
end
function request()
  n = n + 1
  local user = first + tid * span + n
  return wrk.format("POST", "/api/v1/coupons/issue", json_headers,
    '{"userId":' .. user .. ',"couponId":' .. coupon .. '}')
end
