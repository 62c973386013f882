-- view(site, visitor, now) -> {first, last, ended, began[, lease]} | {'unknown'}
-- A page view: the live visit, refreshed, or a new one beginning now (began: '1'), and the
-- visitor's live lease, extended: a page view is activity (rules.rs: PoolState::view).
local site, visitor, now = ARGV[1], ARGV[2], advance(tonumber(ARGV[3]))
local r = rules_of(site)
if not (r and r.active) then return {'unknown'} end
local v = live_visit(site, visitor, now)
local began = '0'
if not v then
  v = {first = fmt(now), ended = ''}
  began = '1'
end
active_visit(site, visitor, v, now, r)
local out = {v.first, fmt(now), v.ended, began}
local id = live_lease(site, visitor, now)
if id then
  extend(id, r, now)
  out[5] = lease_flat(id)
end
return out
