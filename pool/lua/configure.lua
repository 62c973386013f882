-- configure(now, history_ms, nsites, [site max idle hold grace shrink cool]*nsites, [number target tsite]*)
-- Brings the pool in line with the configuration (rules.rs: PoolState::configure).
local now = advance(tonumber(ARGV[1]))
redis.call('HSET', k('meta'), 'history', ARGV[2])
local nsites = tonumber(ARGV[3])
local configured = {}
local i = 4
for _ = 1, nsites do
  local s = ARGV[i]
  configured[s] = true
  redis.call('SADD', k('sites'), s)
  redis.call('HSET', k('site', s), 'active', '1', 'max', ARGV[i + 1], 'idle', ARGV[i + 2], 'hold', ARGV[i + 3],
    'grace', ARGV[i + 4], 'shrink', ARGV[i + 5], 'cool', ARGV[i + 6])
  redis.call('HSETNX', k('site', s), 'exhausted', '0')
  i = i + 7
end
for _, s in ipairs(redis.call('SMEMBERS', k('sites'))) do
  if not configured[s] then redis.call('HSET', k('site', s), 'active', '0') end
end
-- (rules_of caches per script run: every site above is written before settle first reads one.)
local targets = {}
for _, n in ipairs(redis.call('SMEMBERS', k('nums'))) do targets[n] = {'retired', ''} end
while i <= #ARGV do
  targets[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2]}
  i = i + 3
end
for n, t in pairs(targets) do
  local st = num_get(n)
  if st then
    -- Indexed again under its target (a held number too; a pool an earlier version wrote gains
    -- the indexes it lacked).
    unindex_number(n, st)
    st.target, st.tsite = t[1], t[2]
    index_number(n, st)
    redis.call('HSET', k('num', n), 'target', t[1], 'tsite', t[2])
  else
    st = {target = t[1], tsite = t[2], site = '', holder = '', idle = 0, last = '', cool = 0}
    redis.call('SADD', k('nums'), n)
    index_number(n, st)
    num_save(n, st)
  end
  settle(n, now)
end
return 1
