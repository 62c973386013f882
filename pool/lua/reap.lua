-- reap(now, batch) -> {more, ended lease...}
-- Ends up to `batch` leases expired by now, trims up to `batch` history entries older than the
-- history length and forgets up to `batch` visits that ended by now (rules.rs: PoolState::reap).
-- Atomic, so every node may run it at once: each lease is ended exactly once. `more` is 1 when
-- a batch was full; the caller then runs it again.
local now, batch = advance(tonumber(ARGV[1])), tonumber(ARGV[2])
local out = {0}
local due = redis.call('ZRANGEBYSCORE', k('exp'), '-inf', fmt(now), 'LIMIT', 0, batch)
for _, id in ipairs(due) do
  out[#out + 1] = end_lease(id, now)
end
local history = tonumber(redis.call('HGET', k('meta'), 'history') or '0')
local old = redis.call('ZRANGEBYSCORE', k('ended'), '-inf', '(' .. fmt(now - history), 'LIMIT', 0, batch)
for _, id in ipairs(old) do
  local n = redis.call('HGET', k('lease', id), 'number')
  if n then redis.call('ZREM', k('hist', n), id) end
  redis.call('DEL', k('lease', id))
  redis.call('ZREM', k('ended'), id)
end
local gone = redis.call('ZRANGEBYSCORE', k('vexp'), '-inf', fmt(now), 'LIMIT', 0, batch)
for _, m in ipairs(gone) do
  local sep = string.find(m, ':', 1, true)
  redis.call('DEL', k('visit', string.sub(m, 1, sep - 1), string.sub(m, sep + 1)))
  redis.call('ZREM', k('vexp'), m)
end
if #due == batch or #old == batch or #gone == batch then out[1] = 1 end
return out
