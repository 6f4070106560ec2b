-- Prints one JSON line with what the runner needs, including p99.9 that wrk's own
-- summary leaves out.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non2xx":%d,"timeouts":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.timeout, e.connect + e.read + e.write,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean))
end
