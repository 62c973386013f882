-- history(number, before, from) -> {lease...}
-- The number's leases that started at or before `before`, latest first, down to the first one
-- that ended before `from`. Leases of one number never overlap, so their ends are ordered like
-- their starts. The caller picks holder_at / last_holders from these with the same predicates
-- as the embedded store (types.rs: Lease::covers, Lease::ended_within).
local from = tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', k('hist', ARGV[1]), ARGV[2], '-inf')) do
  local l = lease_get(id)
  out[#out + 1] = lease_flat(id)
  local e = tonumber(l['end']) or l.exp
  if e < from then break end
end
return out
