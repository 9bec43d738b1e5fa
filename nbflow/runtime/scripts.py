"""Lua scripts: the run-state changes that must be atomic.

Every script touches only the keys of one run (one hash slot), so each works on
Redis Cluster. Event payloads are built in Python and passed in as JSON.

Pipelines send scripts with EVAL and their full text: the server caches the
compiled script either way, and EVALSHA in a redis-py pipeline costs an extra
SCRIPT EXISTS round trip on every execute (and NOSCRIPT handling after a restart).
"""

from __future__ import annotations

# Take a run's lease, count the attempt and log run.started, then return the run's
# metadata and recorded steps: a claim is one round trip, and a run is never
# "running" without its run.started event. The event is built here because only
# the script knows the attempt number: ARGV[4] is its JSON without the closing
# brace, to which the workflow's name and the attempt are added.
# On a standalone server the script also acknowledges and deletes the work
# message and puts a claimed run in the lease index (KEYS[5], KEYS[6]); on
# Cluster those keys live on other slots and the worker sends those commands itself.
# KEYS: lease, meta, steps, log[, lease index, work stream]
# ARGV: worker, lease_ms, now_s, started_event_head[, run_id, lease_deadline_ms, group, msg_id]
# -> {code, meta pairs, step pairs}; code 1 claimed, 0 someone holds the lease,
# -1 the run is finished or unknown
CLAIM = """
if KEYS[6] then
  redis.call('XACK', KEYS[6], ARGV[7], ARGV[8])
  redis.call('XDEL', KEYS[6], ARGV[8])
end
local code
if redis.call('EXISTS', KEYS[1]) == 1 then
  code = 0
else
  local status = redis.call('HGET', KEYS[2], 'status')
  if (not status) or status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    code = -1
  else
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    redis.call('HSET', KEYS[2], 'status', 'running', 'worker', ARGV[1])
    redis.call('HSETNX', KEYS[2], 'started_at', ARGV[3])
    local attempt = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
    local workflow = redis.call('HGET', KEYS[2], 'workflow') or ''
    redis.call('XADD', KEYS[4], '*', 'e',
      ARGV[4] .. ',"workflow":' .. cjson.encode(workflow) .. ',"attempt":' .. attempt .. '}')
    if KEYS[5] then redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5]) end
    code = 1
  end
end
if code ~= 1 then return {code, {}, {}} end
return {code, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""

# Accept a run in one step: its metadata, its run.queued event, its place in the
# runs index and its work message. A run is either wholly accepted or not at all.
# (Standalone servers only: on Cluster these keys live on different slots, and
# the client writes them in this order instead.)
# KEYS: meta, log, runs index, work stream
# ARGV: run_id, created_at, queued_event_json, then metadata field/value pairs
SUBMIT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'run', ARGV[1])
return 1
"""

# KEYS: lease, meta  ARGV: worker, lease_ms -> {owned 0|1, cancel requested 0|1}
RENEW = """
local cancel = redis.call('HGET', KEYS[2], 'cancel_requested') == '1' and 1 or 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cancel}
end
return {0, cancel}
"""

# Append one event while holding the run's lease; with a step, record its result
# in the same atomic step, so a finished step is never both absent and reported.
# KEYS: log, lease, steps  ARGV: worker, event_json[, step, blob] -> 1, or 0 if the lease is lost
APPEND = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[3] then redis.call('HSET', KEYS[3], ARGV[3], ARGV[4]) end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[2])
return 1
"""

# End a run held by this worker. On a standalone server the run also leaves the
# lease index (KEYS[5]); on Cluster the worker removes it itself.
# KEYS: lease, meta, log, steps[, lease index]
# ARGV: worker, status, event_json, retention_s, run_id, then field/value pairs
FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[5]) end
redis.call('HSET', KEYS[2], 'status', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 1
"""

# Hand a run back to the queue (drain, lost lease). KEYS: lease, meta, log
# ARGV: worker ('' = whoever), event_json -> 1 if requeued
REQUEUE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'running' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'status', 'queued')
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
return 1
"""

# The sweeper's verdict on a run whose lease looked expired.
# KEYS: lease, meta, log, steps  ARGV: max_restarts, restarted_json, failed_json, retention_s, now_s
# -> 'alive' | 'done' | 'queued' | 'requeue' | 'failed'
SWEEP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'alive' end
local status = redis.call('HGET', KEYS[2], 'status')
if (not status) or status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return 'done'
end
if status == 'queued' then return 'queued' end
local restarts = redis.call('HINCRBY', KEYS[2], 'restarts', 1)
if restarts > tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[2], 'status', 'failed', 'reason', 'worker_lost', 'ended_at', ARGV[5],
             'error', 'worker lost more than ' .. ARGV[1] .. ' times')
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
  return 'failed'
end
redis.call('HSET', KEYS[2], 'status', 'queued', 'reason', 'worker_lost')
redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
return 'requeue'
"""

# KEYS: meta, log  ARGV: requested_json, cancelled_json, retention_s, now_s
# -> 'cancelled' (was queued), 'requested' (running), 'finished', 'missing'
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 'finished' end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'ended_at', ARGV[4], 'reason', 'cancelled')
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 'cancelled'
end
if redis.call('HGET', KEYS[1], 'cancel_requested') ~= '1' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
end
return 'requested'
"""
