-- touch(site, visitor, now) -> lease | {}
-- Activity: extends the visitor's live lease (rules.rs: PoolState::touch).
local site, visitor, now = ARGV[1], ARGV[2], advance(tonumber(ARGV[3]))
local r = rules_of(site)
local v = live_visit(site, visitor, now)
if v and r then active_visit(site, visitor, v, now, r) end
local id = live_lease(site, visitor, now)
if not (id and r) then return {} end
extend(id, r, now)
return lease_flat(id)
