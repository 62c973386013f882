-- leave(site, visitor, now) -> lease | {}
-- The visitor left: the lease ends release_grace from now unless it comes back (rules.rs: PoolState::leave).
local site, visitor, now = ARGV[1], ARGV[2], advance(tonumber(ARGV[3]))
local id, exp = live_lease(site, visitor, now)
local r = rules_of(site)
if not (id and r) then return {} end
exp = math.min(exp, now + r.grace)
redis.call('HSET', k('lease', id), 'exp', fmt(exp), 'left', '1')
redis.call('ZADD', k('exp'), exp, id)
return lease_flat(id)
