-- visits_forget(before, limit, site...) -> visits removed
-- Forgets up to `limit` recorded visits per site that began before `before`.
local before, limit = ARGV[1], ARGV[2]
local removed = 0
for s = 3, #ARGV do
  local index, log = k('visitidx', ARGV[s]), k('visitlog', ARGV[s])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, limit)) do
    redis.call('HDEL', log, id)
    redis.call('ZREM', index, id)
    removed = removed + 1
  end
end
return removed
