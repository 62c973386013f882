-- acquire(site, visitor, attrs_json, now) -> {'leased', fresh, lease...} | {'exhausted'} | {'unknown'}
-- A lease for the visitor: the live one, extended, or a fresh one (rules.rs: PoolState::acquire).
local site, visitor, attrs, now = ARGV[1], ARGV[2], ARGV[3], advance(tonumber(ARGV[4]))
local r = rules_of(site)
if not (r and r.active) then return {'unknown'} end
local held = redis.call('HGET', k('live', site), visitor)
if held then
  if tonumber(redis.call('HGET', k('lease', held), 'exp')) > now then
    extend(held, r, now)
    return {'leased', '0', lease_flat(held)}
  end
  -- Expired but not yet reaped: it ended at its expiry, and the visitor starts anew.
  end_lease(held, now)
end
local n = redis.call('ZRANGE', k('free', site), 0, 0)[1]
local from_inventory = false
if not n then
  local size = redis.call('SCARD', k('work', site))
  local cand = nil
  for _, m in ipairs(redis.call('ZRANGE', k('inv'), 0, -1)) do
    local v = redis.call('HMGET', k('num', m), 'last', 'cool')
    if v[1] == '' or v[1] == site or tonumber(v[2]) <= now then
      cand = m
      break
    end
  end
  if cand and size < r.max then
    n = cand
    from_inventory = true
  else
    redis.call('HINCRBY', k('site', site), 'exhausted', 1)
    return {'exhausted'}
  end
end
local id = tostring(redis.call('HINCRBY', k('meta'), 'last_lease_id', 1))
local start, exp = fmt(now), fmt(now + math.min(r.idle, r.hold))
redis.call('HSET', k('lease', id), 'id', id, 'site', site, 'visitor', visitor, 'number', n, 'attrs', attrs,
  'start', start, 'exp', exp, 'end', '', 'reason', '', 'left', '0')
redis.call('ZADD', k('exp'), exp, id)
redis.call('ZADD', k('hist', n), now, id)
redis.call('HSET', k('live', site), visitor, id)
if from_inventory then
  local st = num_get(n)
  unindex_number(n, st)
  st.site = site
  st.last = site
  st.holder = id
  index_number(n, st)
  num_save(n, st)
else
  -- A free number of the site's own working set: it only stops being free.
  redis.call('ZREM', k('free', site), n)
  redis.call('HSET', k('num', n), 'holder', id)
end
return {'leased', '1', {'id', id, 'site', site, 'visitor', visitor, 'number', n, 'attrs', attrs,
  'start', start, 'exp', exp, 'end', '', 'reason', '', 'left', '0'}}
