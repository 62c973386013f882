-- Shared helpers, prepended to every script (see pool/src/redis_store.rs).
-- These mirror pool/src/rules.rs function by function; keep the two in step.
-- KEYS[1] is the key prefix, e.g. "{callpool}"; the braces make every key hash to one slot.
local P = KEYS[1]
local function k(...) return P .. ':' .. table.concat({...}, ':') end
local function fmt(x) return string.format('%.0f', x) end

-- The pool's time never runs backwards (rules.rs: PoolState::advance): an operation handed an
-- earlier time than one already seen uses the latest.
local function advance(now)
  local c = tonumber(redis.call('HGET', k('meta'), 'clock') or '0')
  if now > c then
    redis.call('HSET', k('meta'), 'clock', fmt(now))
    return now
  end
  return c
end

local function pool_time(now)
  return math.max(now, tonumber(redis.call('HGET', k('meta'), 'clock') or '0'))
end

local NUM_FIELDS = {'target', 'tsite', 'site', 'holder', 'idle', 'last', 'cool'}

-- A number's stored state as a table, or nil if the number is unknown.
local function num_get(n)
  local v = redis.call('HMGET', k('num', n), unpack(NUM_FIELDS))
  if not v[1] then return nil end
  local st = {}
  for i, f in ipairs(NUM_FIELDS) do st[f] = v[i] or '' end
  st.idle = tonumber(st.idle) or 0
  st.cool = tonumber(st.cool) or 0
  return st
end

local function num_save(n, st)
  redis.call('HSET', k('num', n), 'target', st.target, 'tsite', st.tsite, 'site', st.site,
    'holder', st.holder, 'idle', fmt(st.idle), 'last', st.last, 'cool', fmt(st.cool))
end

-- A number in the indexes its state puts it in. Besides those rules.rs keeps, three let the reaper
-- and status work in proportion to what changes, never to the pool's size: `sfree:S` (the free
-- shared numbers of S's working set: what shrink looks at), `ded:S` (S's dedicated numbers in its
-- working set) and `cool:S` (the numbers in the inventory that S used last, by cooldown end).
local function index_number(n, st)
  if st.site ~= '' then
    redis.call('SADD', k('work', st.site), n)
    if st.holder == '' then
      redis.call('ZADD', k('free', st.site), st.idle, n)
      if st.target == 'shared' then redis.call('ZADD', k('sfree', st.site), st.idle, n) end
    end
    if st.target == 'dedicated' and st.tsite == st.site then redis.call('SADD', k('ded', st.site), n) end
  else
    redis.call('ZADD', k('inv'), st.idle, n)
    if st.last ~= '' then redis.call('ZADD', k('cool', st.last), st.cool, n) end
  end
end

local function unindex_number(n, st)
  if st.site ~= '' then
    redis.call('SREM', k('work', st.site), n)
    redis.call('ZREM', k('free', st.site), n)
    redis.call('ZREM', k('sfree', st.site), n)
    redis.call('SREM', k('ded', st.site), n)
  else
    redis.call('ZREM', k('inv'), n)
    if st.last ~= '' then redis.call('ZREM', k('cool', st.last), n) end
  end
end

-- A site's rules, or nil for an unknown site. Read once per script run: a reap that ends many
-- leases of one site reads its rules once.
local RULES = {}
local function rules_of(site)
  local cached = RULES[site]
  if cached ~= nil then return cached or nil end
  local v = redis.call('HMGET', k('site', site), 'active', 'max', 'idle', 'hold', 'grace', 'shrink', 'cool')
  if not v[1] then
    RULES[site] = false
    return nil
  end
  local r = {active = v[1] == '1', max = tonumber(v[2]), idle = tonumber(v[3]), hold = tonumber(v[4]),
    grace = tonumber(v[5]), shrink = tonumber(v[6]), cool = tonumber(v[7])}
  RULES[site] = r
  return r
end

-- Puts a free number where its target says (rules.rs: PoolState::settle).
local function settle(n, now)
  local st = num_get(n)
  if not st or st.holder ~= '' then return end
  unindex_number(n, st)
  if st.target == 'retired' then
    redis.call('DEL', k('num', n))
    redis.call('SREM', k('nums'), n)
    return
  elseif st.target == 'dedicated' then
    if st.site ~= st.tsite then
      st.site = st.tsite
      st.last = st.tsite
    end
  elseif st.site ~= '' then
    local r = rules_of(st.site)
    if not (r and r.active) then
      local cooldown = (r and r.cool) or 0
      st.site = ''
      st.cool = math.max(st.cool, now + cooldown)
    end
  end
  index_number(n, st)
  num_save(n, st)
end

-- The visitor's visit {first, last, ended} if it is alive at `now` (rules.rs: live_visit).
local function live_visit(site, visitor, now)
  local v = redis.call('HMGET', k('visit', site, visitor), 'first', 'last', 'ended', 'until')
  if v[1] and tonumber(v[4]) > now then return {first = v[1], last = v[2], ended = v[3]} end
  return nil
end

-- Stores a visit active at `now` (rules.rs: active_visit). Redis expires the key a day after the
-- visit would end, as garbage collection only: the pool's own clock decides what is alive.
local function active_visit(site, visitor, v, now, rules)
  local key = k('visit', site, visitor)
  local until_ = now + rules.idle
  redis.call('HSET', key, 'first', v.first, 'last', fmt(now), 'ended', v.ended, 'until', fmt(until_))
  redis.call('PEXPIRE', key, rules.idle + 86400000)
  redis.call('ZADD', k('vexp'), until_, site .. ':' .. visitor)
end

local LEASE_FIELDS = {'id', 'site', 'visitor', 'number', 'attrs', 'start', 'exp', 'end', 'reason', 'left'}

local function lease_flat(id)
  return redis.call('HGETALL', k('lease', id))
end

local function lease_get(id)
  local v = redis.call('HMGET', k('lease', id), unpack(LEASE_FIELDS))
  if not v[1] then return nil end
  local l = {}
  for i, f in ipairs(LEASE_FIELDS) do l[f] = v[i] or '' end
  l.start = tonumber(l.start)
  l.exp = tonumber(l.exp)
  return l
end

-- The visitor's lease id and expiry if it is live and not expired at `now`.
local function live_lease(site, visitor, now)
  local id = redis.call('HGET', k('live', site), visitor)
  if not id then return nil end
  local exp = tonumber(redis.call('HGET', k('lease', id), 'exp'))
  if exp and exp > now then return id, exp end
  return nil
end

local function extend(id, rules, now)
  local start = tonumber(redis.call('HGET', k('lease', id), 'start'))
  local exp = math.min(now + rules.idle, start + rules.hold)
  redis.call('HSET', k('lease', id), 'exp', fmt(exp), 'left', '0')
  redis.call('ZADD', k('exp'), exp, id)
end

-- Ends a live lease at its expiry (rules.rs: PoolState::end_lease); returns the ended lease
-- as the flat field/value array HGETALL would give.
local function end_lease(id, now)
  local l = lease_get(id)
  local r = rules_of(l.site)
  local reason = 'idle'
  if l.left == '1' then
    reason = 'left'
  elseif r and r.hold <= l.exp - l.start then
    reason = 'max_hold'
  end
  redis.call('HSET', k('lease', id), 'end', fmt(l.exp), 'reason', reason)
  local flat = {'id', l.id, 'site', l.site, 'visitor', l.visitor, 'number', l.number, 'attrs', l.attrs,
    'start', fmt(l.start), 'exp', fmt(l.exp), 'end', fmt(l.exp), 'reason', reason, 'left', l.left}
  redis.call('ZREM', k('exp'), id)
  redis.call('ZADD', k('ended'), l.exp, id)
  redis.call('HDEL', k('live', l.site), l.visitor)
  if reason ~= 'left' then
    local vkey = k('visit', l.site, l.visitor)
    if redis.call('EXISTS', vkey) == 1 then redis.call('HSET', vkey, 'ended', fmt(l.exp)) end
  end
  local v = redis.call('HMGET', k('num', l.number), 'target', 'tsite', 'site')
  if not v[1] then return flat end
  if (v[1] == 'dedicated' and v[2] == v[3]) or (v[1] == 'shared' and r and r.active) then
    -- The common case: the number stays where it is and becomes free (what settle would do).
    redis.call('HSET', k('num', l.number), 'holder', '', 'idle', fmt(l.exp))
    redis.call('ZADD', k('free', v[3]), l.exp, l.number)
    if v[1] == 'shared' then redis.call('ZADD', k('sfree', v[3]), l.exp, l.number) end
    return flat
  end
  local st = num_get(l.number)
  unindex_number(l.number, st)
  st.holder = ''
  st.idle = l.exp
  index_number(l.number, st)
  num_save(l.number, st)
  settle(l.number, now)
  return flat
end

-- A lease for the visitor of an active site (rules `r`): the live one, extended, or a fresh one
-- (rules.rs: PoolState::acquire, after its site check) -> {'leased', fresh, lease...} | {'exhausted'}
local function acquire_lease(site, visitor, attrs, now, r)
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
    redis.call('ZREM', k('sfree', site), n)
    redis.call('HSET', k('num', n), 'holder', id)
  end
  return {'leased', '1', {'id', id, 'site', site, 'visitor', visitor, 'number', n, 'attrs', attrs,
    'start', start, 'exp', exp, 'end', '', 'reason', '', 'left', '0'}}
end
