-- cb_update(id, rank, callback JSON, keep ms, pending state JSON, n links, {call key}...,
--           n jobs, {kind, due}...) -> 1 written, 0 a later status is stored, -1 no such callback
-- A callback's status only moves forward (rank; a final status stays), so a PBX that reports
-- the answer before the trigger's own answer arrived is not overwritten by "calling". With the
-- write, in the same step: new call-key links and new jobs (e.g. "missed" notifications).
local id = ARGV[1]
local ck = k('cb', id)
local cur = redis.call('HGET', ck, 'r')
if not cur then return -1 end
cur = tonumber(cur)
local new = tonumber(ARGV[2])
if new < cur or (new == cur and cur >= 5) then return 0 end
local keep, pending = ARGV[4], ARGV[5]
redis.call('HSET', ck, 'r', ARGV[2], 'j', ARGV[3])
redis.call('PEXPIRE', ck, keep)
links_and_jobs(6, id, keep, pending, true)
return 1
