-- callbacks_update(id, rank, callback JSON, keep ms, final rank, n links, {call key}...,
--                  n jobs, {kind, state, due}...) -> 1 written, 0 a later status is stored, -1 no such callback
-- A callback's status only moves forward (rank; a final status stays), so a PBX that reports
-- the answer before the trigger's own answer arrived is not overwritten by "calling". With the
-- write, in the same step: its call-key links and new jobs (e.g. "missed" notifications).
local id = ARGV[1]
local ck = k('cb', id)
local cur = redis.call('HGET', ck, 'r')
if not cur then return -1 end
cur = tonumber(cur)
local new = tonumber(ARGV[2])
if new < cur or (new == cur and cur >= tonumber(ARGV[5])) then return 0 end
local keep = ARGV[4]
redis.call('HSET', ck, 'r', ARGV[2], 'j', ARGV[3])
redis.call('PEXPIRE', ck, keep)
job_plans(link_all(6, id, keep), id, true)
return 1
