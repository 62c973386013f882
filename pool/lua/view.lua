-- view(site, visitor, now) -> {first, last, ended[, lease]} | {'unknown'}
-- A page view: the live visit, refreshed, or a new one beginning now, and the visitor's live
-- lease, extended: a page view is activity (rules.rs: PoolState::view).
local site, visitor, now = ARGV[1], ARGV[2], advance(tonumber(ARGV[3]))
local r = rules_of(site)
if not (r and r.active) then return {'unknown'} end
local v = live_visit(site, visitor, now) or {first = fmt(now), ended = ''}
active_visit(site, visitor, v, now, r)
local out = {v.first, fmt(now), v.ended}
local id = live_lease(site, visitor, now)
if id then
  extend(id, r, now)
  out[4] = lease_flat(id)
end
return out
