-- GET /api/v1/points with a bearer token (end-user authentication on): the user is the
-- token's; tokens of the seeded subjects, one per line of BENCH_TOKENS_FILE, picked
-- uniformly.
local tokens
function scenario_init()
  tokens = {}
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    table.insert(tokens, { ["Authorization"] = "Bearer " .. line })
  end
end
function request()
  return wrk.format("GET", "/api/v1/points", tokens[math.random(1, #tokens)])
end
