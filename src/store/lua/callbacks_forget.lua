-- callbacks_forget(before, limit, n kinds, {kind}..., site...) -> callbacks removed
-- Forgets up to `limit` callbacks per site requested before `before`: the record (it also
-- expires on its own), its place in the site's index and every trace of its jobs of `kinds`.
local before, limit = ARGV[1], ARGV[2]
local kinds, i = list_at(3)
local removed = 0
for s = i, #ARGV do
  local index = k('cbsite', ARGV[s])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, limit)) do
    redis.call('DEL', k('cb', id))
    redis.call('ZREM', index, id)
    jobs_forget(kinds, id)
    removed = removed + 1
  end
end
return removed
