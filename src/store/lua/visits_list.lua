-- visits_list(site, from, to, limit) -> {visit JSON...}
-- The site's recorded visits that began in [from, to], oldest first.
local log, out = k('visitlog', ARGV[1]), {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k('visitidx', ARGV[1]), ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])) do
  local v = redis.call('HGET', log, id)
  if v then out[#out + 1] = v end
end
return out
