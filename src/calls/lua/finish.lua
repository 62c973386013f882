-- finish(kind, job, state JSON, retry at ('' = done), dead (1/0), now)
-- Ends a claim: either the job is done (its delivery state written: sent, skipped or dead) or it
-- goes back to the queue for `retry at` with one more attempt counted.
local kind, job = ARGV[1], ARGV[2]
redis.call('ZREM', k('obclaim', kind), job)
redis.call('ZREM', k('ob', kind), job)
if ARGV[4] ~= '' then
  redis.call('ZADD', k('ob', kind), ARGV[4], job)
  redis.call('HINCRBY', k('obtries'), job, 1)
  return 1
end
redis.call('HSET', k('obstate'), job, ARGV[3])
redis.call('HDEL', k('obtries'), job)
if ARGV[5] == '1' then redis.call('ZADD', k('obdead', kind), ARGV[6], job) end
return 1
