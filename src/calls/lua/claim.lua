-- claim(kind, now, limit, hold until, record namespace) -> {job, attempts, record JSON, ...}
-- Hands out up to `limit` due jobs of one kind, each to one worker: a claimed job leaves the
-- queue for the claim set until `hold until`; a claim not finished by then (its node died) goes
-- back to the queue. A job whose delivery is no longer pending is dropped (dedupe before send).
local kind, now = ARGV[1], ARGV[2]
local q, claimed = k('ob', kind), k('obclaim', kind)
for _, job in ipairs(redis.call('ZRANGEBYSCORE', claimed, '-inf', now)) do
  redis.call('ZREM', claimed, job)
  redis.call('ZADD', q, now, job)
end
local out = {}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', q, job)
  local state = redis.call('HGET', k('obstate'), job)
  local call = redis.call('HGET', k(ARGV[5], string.sub(job, #kind + 2)), 'j')
  if state and call and string.find(state, '"state":"pending"', 1, true) then
    redis.call('ZADD', claimed, ARGV[4], job)
    out[#out + 1] = job
    out[#out + 1] = tostring(redis.call('HGET', k('obtries'), job) or '0')
    out[#out + 1] = call
  end
end
return out
