-- calls(site, from, to, limit) -> {call JSON, ga4 state, yandex state, ...}
-- The site's calls that started in [from, to], oldest first, with their delivery states.
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', k('calls', ARGV[1]), ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])) do
  local call = redis.call('HGET', k('call', key), 'j')
  if call then
    out[#out + 1] = call
    out[#out + 1] = redis.call('HGET', k('obstate'), 'ga4|' .. key) or ''
    out[#out + 1] = redis.call('HGET', k('obstate'), 'yandex|' .. key) or ''
  end
end
return out
