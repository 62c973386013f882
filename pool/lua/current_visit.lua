-- current_visit(site, visitor, now) -> {first, last, ended} | {}
-- The visitor's visit if it is alive, read only.
local v = live_visit(ARGV[1], ARGV[2], pool_time(tonumber(ARGV[3])))
if not v then return {} end
return {v.first, v.last, v.ended}
