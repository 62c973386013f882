-- current(site, visitor, now) -> lease | {}
-- The visitor's live lease, read only.
local id = live_lease(ARGV[1], ARGV[2], pool_time(tonumber(ARGV[3])))
if not id then return {} end
return lease_flat(id)
