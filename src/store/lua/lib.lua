-- Prepended to every script of the service's store (src/store/redis.rs).
-- KEYS[1] is the prefix ("{callpool}"): every key is P:name:part..., in the pool's hash slot.
local P = KEYS[1]
local function k(...) return P .. ':' .. table.concat({...}, ':') end

-- The job queue (src/store/jobs.rs). A job is '<kind>|<record id>'. P:ob:KIND holds the queued
-- jobs by due time, P:obclaim:KIND the claimed ones by the time their claim runs out,
-- P:obdead:KIND the dead ones by the time they died; P:obstate each job's state (JSON, as Rust
-- writes it; scripts only compare it with the values Rust passes in), P:obtries the failed attempts.
local function job_of(kind, id) return kind .. '|' .. id end

-- Sets a job's state, and queues it for `due` unless `due` is ''.
local function job_plan(kind, id, state, due)
  local job = job_of(kind, id)
  redis.call('HSET', k('obstate'), job, state)
  if due ~= '' then redis.call('ZADD', k('ob', kind), due, job) end
end

-- Brings a queued job forward to `due` if it is due later.
local function job_hurry(kind, id, due)
  local q, job = k('ob', kind), job_of(kind, id)
  local at = redis.call('ZSCORE', q, job)
  if at and tonumber(at) > tonumber(due) then redis.call('ZADD', q, due, job) end
end

-- Reads `n, {kind, state, due}...` from ARGV at `i` and plans each job of record `id` (with
-- `only_new`, a job that exists already is left as it is); an empty state hurries the queued job
-- instead. Returns the index after what it read.
local function job_plans(i, id, only_new)
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    local kind, state, due = ARGV[i], ARGV[i + 1], ARGV[i + 2]; i = i + 3
    if state == '' then
      job_hurry(kind, id, due)
    elseif not (only_new and redis.call('HEXISTS', k('obstate'), job_of(kind, id)) == 1) then
      job_plan(kind, id, state, due)
    end
  end
  return i
end

-- Every trace of the jobs of `kinds` (a list) of record `id`.
local function jobs_forget(kinds, id)
  for _, kind in ipairs(kinds) do
    local job = job_of(kind, id)
    redis.call('HDEL', k('obstate'), job)
    redis.call('HDEL', k('obtries'), job)
    redis.call('ZREM', k('ob', kind), job)
    redis.call('ZREM', k('obclaim', kind), job)
    redis.call('ZREM', k('obdead', kind), job)
  end
end

-- Reads `n, {item}...` from ARGV at `i`: the items and the index after them.
local function list_at(i)
  local n, out = tonumber(ARGV[i]), {}
  for j = 1, n do out[j] = ARGV[i + j] end
  return out, i + n + 1
end
