-- callbacks_create(site, number, now, id, rank, callback JSON, keep ms, ban ms, final rank, due ms,
--                  open since ms, n number windows, {count, period ms}..., n site windows,
--                  {count, period ms}..., source ('' for none), n source windows, {count, period ms}...,
--                  n links, {call key}..., n jobs, {kind, state, due}...)
--   -> {'ok', 0} | {'open', id} | {scope, retry after ms} with scope 'banned', 'number', 'site' or 'source'
-- A request for a number whose last callback is still open (its rank below the final rank, and
-- due after `open since`) is answered with that callback ('open'): a double submit or a second
-- tab never rings twice. Checks the per-number and per-site limits (sliding windows over the
-- requests accepted before) and, when none is used up, stores the callback, counts it, links
-- the call keys the PBX will report it under, and plans its jobs: all in one atomic step, so a
-- burst across many nodes never gets past a limit. A number that uses up its longest window is
-- banned for `ban ms`.
local site, number, now, id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local keep, ban_ms, final = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local ban = k('cbban', site, number)
local left = redis.call('PTTL', ban)
if left > 0 then return {'banned', left} end
local nz, sz = k('cbnum', site, number), k('cbsite', site)
local last = redis.call('ZREVRANGE', nz, 0, 0)[1]
if last then
  local f = redis.call('HMGET', k('cb', last), 'r', 'd')
  if f[1] and tonumber(f[1]) < final and tonumber(f[2] or '0') > tonumber(ARGV[11]) then return {'open', last} end
end
local i = 12
local function windows()
  local n = tonumber(ARGV[i]); i = i + 1
  local out = {}
  for w = 1, n do
    out[w] = {tonumber(ARGV[i]), tonumber(ARGV[i + 1])}; i = i + 2
  end
  return out
end
-- The first window used up, as {retry after ms, period}, or nil.
local function used_up(z, ws)
  for _, w in ipairs(ws) do
    local count, period = w[1], w[2]
    local from = '(' .. (now - period)
    local used = redis.call('ZCOUNT', z, from, '+inf')
    if used >= count then
      local oldest = redis.call('ZRANGEBYSCORE', z, from, '+inf', 'WITHSCORES', 'LIMIT', used - count, 1)
      return {math.max(1, tonumber(oldest[2]) + period - now), period}
    end
  end
  return nil
end
local per_number, per_site = windows(), windows()
local source = ARGV[i]; i = i + 1
local per_source = windows()
local longest = 1
for _, w in ipairs(per_number) do longest = math.max(longest, w[2]) end
local hit = used_up(nz, per_number)
if hit then
  if hit[2] == longest and ban_ms > 0 then
    redis.call('SET', ban, '1', 'PX', ban_ms)
    return {'banned', ban_ms}
  end
  return {'number', hit[1]}
end
hit = used_up(sz, per_site)
if hit then return {'site', hit[1]} end
-- A source (a client address) may use only its share of the site's windows.
local srcz, site_longest = nil, 1
for _, w in ipairs(per_site) do site_longest = math.max(site_longest, w[2]) end
if source ~= '' then
  srcz = k('cbsrc', site, source)
  hit = used_up(srcz, per_source)
  if hit then return {'source', hit[1]} end
end
local ck = k('cb', id)
redis.call('HSET', ck, 'r', ARGV[5], 'j', ARGV[6], 'd', ARGV[10])
redis.call('PEXPIRE', ck, keep)
redis.call('ZADD', nz, now, id)
redis.call('ZREMRANGEBYSCORE', nz, '-inf', now - longest)
redis.call('PEXPIRE', nz, longest)
redis.call('ZADD', sz, now, id)
if srcz then
  redis.call('ZADD', srcz, now, id)
  redis.call('ZREMRANGEBYSCORE', srcz, '-inf', now - site_longest)
  redis.call('PEXPIRE', srcz, site_longest)
end
job_plans(link_all(i, id, keep), id, false)
return {'ok', 0}
