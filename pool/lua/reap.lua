-- reap(now, batch) -> {ended lease...}
-- Ends up to `batch` leases expired by now and trims up to `batch` history entries older than
-- the history length (rules.rs: PoolState::reap). Atomic, so every node may run it at once:
-- each lease is ended exactly once. The caller repeats while a full batch comes back.
local now, batch = advance(tonumber(ARGV[1])), tonumber(ARGV[2])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('exp'), '-inf', fmt(now), 'LIMIT', 0, batch)) do
  out[#out + 1] = end_lease(id, now)
end
local history = tonumber(redis.call('HGET', k('meta'), 'history') or '0')
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('ended'), '-inf', '(' .. fmt(now - history), 'LIMIT', 0, batch)) do
  local n = redis.call('HGET', k('lease', id), 'number')
  if n then redis.call('ZREM', k('hist', n), id) end
  redis.call('DEL', k('lease', id))
  redis.call('ZREM', k('ended'), id)
end
return out
