-- records_forget(index, record, before, limit, n kinds, {kind}..., site...) -> records removed
-- Forgets up to `limit` records per site listed in the site's index (P:<index>:S) before
-- `before`: the record (P:<record>:ID), its place in the index and every trace of its jobs of
-- `kinds`. Calls (calls/call) and callbacks (cbsite/cb) alike; what else expires on its own
-- (caller memories, callback links and limit windows) is left to expire.
local before, limit = ARGV[3], ARGV[4]
local kinds, i = list_at(5)
local removed = 0
for s = i, #ARGV do
  local index = k(ARGV[1], ARGV[s])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, limit)) do
    redis.call('DEL', k(ARGV[2], id))
    redis.call('ZREM', index, id)
    jobs_forget(kinds, id)
    removed = removed + 1
  end
end
return removed
