-- acquire_due(site, visitor, attrs_json, now, delay_ms)
--   -> {'leased', fresh, lease...} | {'exhausted'} | {'ended'} | {'later', due} | {'unknown'}
-- The visitor's delay may have run out: a lease once the visit is `delay_ms` old; nothing while
-- it is younger (when it will be) or over. A visitor without a live visit begins one now
-- (rules.rs: PoolState::acquire_due).
local site, visitor, attrs, now, delay = ARGV[1], ARGV[2], ARGV[3], advance(tonumber(ARGV[4])), tonumber(ARGV[5])
local r = rules_of(site)
if not (r and r.active) then return {'unknown'} end
local v = live_visit(site, visitor, now)
if not v then
  v = {first = fmt(now), ended = ''}
  active_visit(site, visitor, v, now, r)
end
if v.ended ~= '' then return {'ended'} end
local due = tonumber(v.first) + delay
if now < due then return {'later', fmt(due)} end
return acquire_lease(site, visitor, attrs, now, r)
