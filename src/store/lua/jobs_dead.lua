-- jobs_dead(kind, limit) -> {record id, dead since ms, state JSON, ...}
-- The dead letters of one kind, oldest first.
local kind = ARGV[1]
local dead = redis.call('ZRANGE', k('obdead', kind), 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local rows = {}
for i = 1, #dead, 2 do
  rows[#rows + 1] = string.sub(dead[i], #kind + 2)
  rows[#rows + 1] = dead[i + 1]
  rows[#rows + 1] = redis.call('HGET', k('obstate'), dead[i]) or ''
end
return rows
