-- trim(before, limit, site...) -> removed calls
-- Forgets up to `limit` calls per site that started before `before`: the call, its place in the
-- site's index, its delivery states, attempts and any job left in the outbox; and up to `limit`
-- recorded visits per site that began before it, and up to `limit` callbacks per site requested before it.
local before, limit = ARGV[1], ARGV[2]
-- Every trace of the jobs of `kinds` of one record.
local function forget_jobs(kinds, id)
  for _, kind in ipairs(kinds) do
    local job = kind .. '|' .. id
    redis.call('HDEL', k('obstate'), job)
    redis.call('HDEL', k('obtries'), job)
    redis.call('ZREM', k('ob', kind), job)
    redis.call('ZREM', k('obclaim', kind), job)
    redis.call('ZREM', k('obdead', kind), job)
  end
end
-- Forgets up to `limit` records of each site's index `index` (P:index:S) before `before`: the
-- record (P:record:ID), its place in the index and its jobs of `kinds`. Returns how many.
local function forget(index, record, kinds)
  local n = 0
  for i = 3, #ARGV do
    local idx = k(index, ARGV[i])
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. before, 'LIMIT', 0, limit)) do
      redis.call('DEL', k(record, id))
      redis.call('ZREM', idx, id)
      forget_jobs(kinds, id)
      n = n + 1
    end
  end
  return n
end
local removed = forget('calls', 'call', {'ga4', 'yandex'})
-- Callbacks (their records also expire on their own; their job states do not).
forget('cbsite', 'cb', {'trigger', 'cb_ga4', 'tg_request', 'tg_missed', 'hook_request', 'hook_missed'})
for i = 3, #ARGV do
  local index, log = k('visitidx', ARGV[i]), k('visitlog', ARGV[i])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, limit)) do
    redis.call('HDEL', log, id)
    redis.call('ZREM', index, id)
  end
end
return removed
