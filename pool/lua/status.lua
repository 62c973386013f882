-- status(site, now) -> {max, working, dedicated, free, cooling, exhausted} | {}
local site, now = ARGV[1], pool_time(tonumber(ARGV[2]))
local v = redis.call('HMGET', k('site', site), 'max', 'exhausted')
if not v[1] then return {} end
local dedicated = 0
for _, n in ipairs(redis.call('SMEMBERS', k('work', site))) do
  local t = redis.call('HMGET', k('num', n), 'target', 'tsite')
  if t[1] == 'dedicated' and t[2] == site then dedicated = dedicated + 1 end
end
local cooling = 0
for _, n in ipairs(redis.call('ZRANGE', k('inv'), 0, -1)) do
  local t = redis.call('HMGET', k('num', n), 'last', 'cool')
  if t[1] == site and tonumber(t[2]) > now then cooling = cooling + 1 end
end
return {v[1], redis.call('SCARD', k('work', site)), dedicated, redis.call('ZCARD', k('free', site)), cooling, v[2] or '0'}
