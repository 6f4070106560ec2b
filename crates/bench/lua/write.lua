-- Writes only: a PATCH of a random business's phone, for what a write costs.
-- BUSINESSES (env) is the largest id.

local n = tonumber(os.getenv("BUSINESSES") or "10000")

request = function()
  local body = string.format('{"phone": "(732) 555-%04d"}', math.random(0, 9999))
  return wrk.format("PATCH", "/api/businesses/" .. math.random(1, n),
    {["Content-Type"] = "application/json"}, body)
end
