-- visit(site, visitor, now) -> {first, last, ended} | {'unknown'}
-- A page view: the live visit, refreshed, or a new one beginning now (rules.rs: PoolState::visit).
local site, visitor, now = ARGV[1], ARGV[2], advance(tonumber(ARGV[3]))
local r = rules_of(site)
if not (r and r.active) then return {'unknown'} end
local v = live_visit(site, visitor, now) or {first = fmt(now), ended = ''}
active_visit(site, visitor, v, now, r)
return {v.first, fmt(now), v.ended}
