-- calls_forget(before, limit, n kinds, {kind}..., site...) -> calls removed
-- Forgets up to `limit` calls per site that started before `before`: the call, its place in the
-- site's index and every trace of its jobs of `kinds`. (Caller memories expire on their own.)
local before, limit = ARGV[1], ARGV[2]
local kinds, i = list_at(3)
local removed = 0
for s = i, #ARGV do
  local index = k('calls', ARGV[s])
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, limit)) do
    redis.call('DEL', k('call', key))
    redis.call('ZREM', index, key)
    jobs_forget(kinds, key)
    removed = removed + 1
  end
end
return removed
