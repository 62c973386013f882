-- acquire(site, visitor, attrs_json, now) -> {'leased', fresh, lease...} | {'exhausted'} | {'unknown'}
-- A lease for the visitor: the live one, extended, or a fresh one (rules.rs: PoolState::acquire).
local site, visitor, attrs, now = ARGV[1], ARGV[2], ARGV[3], advance(tonumber(ARGV[4]))
local r = rules_of(site)
if not (r and r.active) then return {'unknown'} end
return acquire_lease(site, visitor, attrs, now, r)
