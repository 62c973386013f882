-- jobs_settle(kind, now, {record id, state JSON, retry at ('' = done), dead (1/0, or 'wait')}...)
-- Ends claims: each job is either done (its state written: sent, skipped or dead) or goes back
-- to the queue for `retry at` with one more attempt counted ('wait': none counted).
local kind, now = ARGV[1], ARGV[2]
local q, claimed = k('ob', kind), k('obclaim', kind)
for i = 3, #ARGV, 4 do
  local job, state, retry, dead = job_of(kind, ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  redis.call('ZREM', claimed, job)
  redis.call('ZREM', q, job)
  if retry ~= '' then
    redis.call('ZADD', q, retry, job)
    if dead ~= 'wait' then redis.call('HINCRBY', k('obtries'), job, 1) end
  else
    redis.call('HSET', k('obstate'), job, state)
    redis.call('HDEL', k('obtries'), job)
    if dead == '1' then redis.call('ZADD', k('obdead', kind), now, job) end
  end
end
return 1
