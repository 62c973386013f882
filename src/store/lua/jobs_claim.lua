-- jobs_claim(kind, now, limit, hold until, record namespace, pending state)
--   -> {record id, attempts, record JSON, ...}
-- Hands out up to `limit` due jobs of one kind, each to one worker: a claimed job leaves the
-- queue for the claim set until `hold until`; a claim not finished by then (its node died) goes
-- back to the queue. A job whose state is no longer the pending state, or whose record is gone,
-- is dropped (dedupe before send).
local kind, now = ARGV[1], ARGV[2]
local q, claimed = k('ob', kind), k('obclaim', kind)
for _, job in ipairs(redis.call('ZRANGEBYSCORE', claimed, '-inf', now)) do
  redis.call('ZREM', claimed, job)
  redis.call('ZADD', q, now, job)
end
local out = {}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', q, job)
  local id = string.sub(job, #kind + 2)
  local state = redis.call('HGET', k('obstate'), job)
  local record = redis.call('HGET', k(ARGV[5], id), 'j')
  if state == ARGV[6] and record then
    redis.call('ZADD', claimed, ARGV[4], job)
    out[#out + 1] = id
    out[#out + 1] = tostring(redis.call('HGET', k('obtries'), job) or '0')
    out[#out + 1] = record
  end
end
return out
