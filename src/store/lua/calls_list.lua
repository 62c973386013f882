-- calls_list(site, from, to, limit) -> {call JSON...}
-- The site's calls that started in [from, to], oldest first.
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', k('calls', ARGV[1]), ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])) do
  local call = redis.call('HGET', k('call', key), 'j')
  if call then out[#out + 1] = call end
end
return out
