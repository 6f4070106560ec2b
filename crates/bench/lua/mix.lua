-- A dashboard's traffic: Zipf-distributed reads over business ids and filter
-- combinations and pages, with 1% writes (a PATCH of a Zipf-chosen business).
-- BUSINESSES (env) is the largest id.

local n = tonumber(os.getenv("BUSINESSES") or "10000")
local cities = {"Freehold", "Red%20Bank", "Asbury%20Park", "Long%20Branch", "Middletown",
  "Toms%20River", "Edison", "Princeton", "Hoboken", "Newark"}
local industries = {"Dental", "Legal", "Real%20Estate", "Accounting", "Insurance",
  "Restaurant", "Automotive", "Fitness", "Salon", "HVAC"}
local statuses = {"pending", "enriched", "failed"}

local function zipf_cdf(k, s)
  local cdf, total = {}, 0
  for i = 1, k do total = total + 1 / (i ^ s); cdf[i] = total end
  for i = 1, k do cdf[i] = cdf[i] / total end
  return cdf
end

local function sample(cdf)
  local u, lo, hi = math.random(), 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local ids, pages, tens, threes
local counter = 0

init = function(args)
  math.randomseed(os.time() + counter)
  ids = zipf_cdf(math.min(n, 100000), 1.1)
  pages = zipf_cdf(10, 1.2)
  tens = zipf_cdf(10, 1.0)
  threes = zipf_cdf(3, 1.0)
end

setup = function(thread) counter = counter + 1 end

local function business_id()
  -- Scatter ranks over the ids so popular businesses are not all the newest.
  return ((sample(ids) * 7919) % n) + 1
end

request = function()
  local r = math.random(1000)
  if r <= 10 then
    local body = string.format('{"phone": "(732) 555-%04d"}', math.random(0, 9999))
    return wrk.format("PATCH", "/api/businesses/" .. business_id(),
      {["Content-Type"] = "application/json"}, body)
  elseif r <= 200 then
    return wrk.format("GET", "/api/businesses/stats")
  elseif r <= 600 then
    local q = "page=" .. sample(pages)
    local shape = math.random(6)
    if shape == 2 then q = q .. "&city=" .. cities[sample(tens)]
    elseif shape == 3 then q = q .. "&industry=" .. industries[sample(tens)]
    elseif shape == 4 then q = q .. "&enrichment_status=" .. statuses[sample(threes)]
    elseif shape == 5 then q = q .. "&city=" .. cities[sample(tens)] .. "&industry=" .. industries[sample(tens)]
    elseif shape == 6 then q = q .. "&city=" .. cities[sample(tens)] .. "&enrichment_status=" .. statuses[sample(threes)]
    end
    return wrk.format("GET", "/api/businesses?" .. q)
  else
    return wrk.format("GET", "/api/businesses/" .. business_id())
  end
end
