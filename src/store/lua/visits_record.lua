-- visits_record(site, first seen ms, visitor, visit JSON) -> 1
-- Records a visit that ended on one node; nodes that held tabs of the same visit merge into one
-- row (latest activity, latest close, most tabs).
local site, first = ARGV[1], ARGV[2]
local id = first .. "|" .. ARGV[3]
local log, index = k('visitlog', site), k('visitidx', site)
local new = cjson.decode(ARGV[4])
local old = redis.call('HGET', log, id)
if old then
  old = cjson.decode(old)
  if old.last_active > new.last_active then new.last_active = old.last_active end
  if old.closed > new.closed then new.closed = old.closed end
  if old.tabs > new.tabs then new.tabs = old.tabs end
end
redis.call('HSET', log, id, cjson.encode(new))
redis.call('ZADD', index, first, id)
return 1
