-- touch(site, visitor, now) -> lease | {}
-- Activity: extends the visitor's live lease (rules.rs: PoolState::touch).
local site, visitor, now = ARGV[1], ARGV[2], advance(tonumber(ARGV[3]))
local id = live_lease(site, visitor, now)
local r = rules_of(site)
if not (id and r) then return {} end
extend(id, r, now)
return lease_flat(id)
