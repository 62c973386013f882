-- Prepended to the callback scripts (after src/calls/lua/lib.lua).
-- Reads `n links, {call key}..., n jobs, {kind, due}...` from ARGV at `i`: links each call key to
-- callback `id` for `keep` ms and queues each job as pending (with `only_new`, a job that exists
-- already is left as it is). Returns the index after what it read.
local function links_and_jobs(i, id, keep, pending, only_new)
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('SET', k('cblink', ARGV[i]), id, 'PX', keep); i = i + 1
  end
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    local kind, due = ARGV[i], ARGV[i + 1]; i = i + 2
    local job = kind .. '|' .. id
    if not (only_new and redis.call('HGET', k('obstate'), job)) then
      redis.call('HSET', k('obstate'), job, pending)
      redis.call('ZADD', k('ob', kind), due, job)
    end
  end
  return i
end
