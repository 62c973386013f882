-- calls_save(key, expected, version, call JSON, site, started ms, caller, caller JSON, caller ttl ms,
--            n jobs, {kind, state JSON, due or ''}..., n hurried, {kind, due}...) -> 1 written, 0 stale
-- Writes a call if its stored version is still `expected` (0: not stored yet); returns 0 otherwise
-- (someone else wrote it first: the caller re-reads and tries again). With the call, in the same
-- atomic step: its place in the site's index, the caller's memory, its jobs, and earlier due
-- times for queued jobs (a call that became final goes out now).
local key = ARGV[1]
local ck = k('call', key)
local cur = tonumber(redis.call('HGET', ck, 'v') or '0')
if cur ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', ck, 'v', ARGV[3], 'j', ARGV[4])
if cur == 0 then redis.call('ZADD', k('calls', ARGV[5]), ARGV[6], key) end
if ARGV[7] ~= '' then redis.call('SET', k('caller', ARGV[5], ARGV[7]), ARGV[8], 'PX', ARGV[9]) end
local i = job_plans(10, key, false)
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  job_hurry(ARGV[i], key, ARGV[i + 1]); i = i + 2
end
return 1
