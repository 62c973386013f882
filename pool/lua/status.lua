-- status(site, now) -> {max, working, dedicated, free, cooling, exhausted} | {}
-- Counts kept by the indexes (lib.lua: index_number): nothing is scanned.
local site, now = ARGV[1], pool_time(tonumber(ARGV[2]))
local v = redis.call('HMGET', k('site', site), 'max', 'exhausted')
if not v[1] then return {} end
return {v[1], redis.call('SCARD', k('work', site)), redis.call('SCARD', k('ded', site)),
  redis.call('ZCARD', k('free', site)), redis.call('ZCOUNT', k('cool', site), '(' .. fmt(now), '+inf'), v[2] or '0'}
