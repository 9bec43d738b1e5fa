"""Lua scripts: the run-state changes that must be atomic.

Every script but TAKE touches only the keys of one run (one hash slot), so each
works on Redis Cluster. Event payloads are built in Python and passed in as JSON.

Pipelines send scripts with EVAL and their full text: the server caches the
compiled script either way, and EVALSHA in a redis-py pipeline costs an extra
SCRIPT EXISTS round trip on every execute (and NOSCRIPT handling after a restart).
TAKE, sent with every read of the work stream, is the exception: by its digest.
"""

from __future__ import annotations

# Take a run's lease, count the attempt and log run.started: a run is never
# "running" without its run.started event. The event is built here because only
# the script knows the attempt number: `head` is its JSON without the closing
# brace, to which the workflow's name and the attempt are added.
# -> 1 claimed, 0 someone holds the lease, -1 the run is finished or unknown
_CLAIM_RUN = """
local function claim_run(lease, meta, log, worker, lease_ms, now_s, head)
  if redis.call('EXISTS', lease) == 1 then return 0 end
  local status = redis.call('HGET', meta, 'status')
  if (not status) or status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    return -1
  end
  redis.call('SET', lease, worker, 'PX', lease_ms)
  redis.call('HSET', meta, 'status', 'running', 'worker', worker)
  redis.call('HSETNX', meta, 'started_at', now_s)
  local attempt = redis.call('HINCRBY', meta, 'attempts', 1)
  local workflow = redis.call('HGET', meta, 'workflow') or ''
  redis.call('XADD', log, '*', 'e',
    head .. ',"workflow":' .. cjson.encode(workflow) .. ',"attempt":' .. attempt .. '}')
  return 1
end
"""

# Claim one run, then return its metadata and recorded steps (Redis Cluster: the
# work message and the lease index live on other slots, so the worker acknowledges
# the message and indexes the lease with commands of its own).
# KEYS: lease, meta, steps, log  ARGV: worker, lease_ms, now_s, started_event_head
# -> {code, meta pairs, step pairs}
CLAIM = (
    _CLAIM_RUN
    + """
local code = claim_run(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if code ~= 1 then return {code, {}, {}} end
return {code, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""
)

# Standalone servers: claim the run of every work message this worker has been
# given and not yet acknowledged (its pending entries), in one step. Sent in the
# same pipeline right behind the worker's blocking XREADGROUP, it runs the moment
# that read is served, so a worker wakes up already holding its runs: reading
# and claiming cost one round trip. Each message is acknowledged and deleted
# whatever becomes of its run; a claimed run enters the lease index. The run's
# keys are built from templates (constants' key names with an empty run id), so
# they cannot be declared in KEYS, which is why Cluster uses CLAIM instead.
# run.started's timestamp is the server's clock, read when the claim happens.
# KEYS: work stream, lease index
# ARGV: group, worker, count, lease_ms, started_event_head (no ts),
#       then the templates of the lease, meta, steps and log keys
# -> one entry per message: {run_id, 1, meta pairs, step pairs} claimed,
#    {run_id, 0 | -1} not claimed, {message_id, -2} not a valid work message
TAKE = (
    _CLAIM_RUN
    + """
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
                         'STREAMS', KEYS[1], '0')
local entries = (reply and reply[1] and reply[1][2]) or {}
local out = {}
if #entries == 0 then return out end
local t = redis.call('TIME')
local now_s = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
local head = ARGV[5] .. ',"ts":' .. now_s
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  local run = nil
  if fields then
    for i = 1, #fields - 1, 2 do
      if fields[i] == 'run' then run = fields[i + 1] end
    end
  end
  if run and #run <= 64 and string.match(run, '^%w+$') then
    local key = {}
    for i = 1, 4 do key[i] = string.gsub(ARGV[5 + i], '{}', '{' .. run .. '}', 1) end
    local code = claim_run(key[1], key[2], key[4], ARGV[2], ARGV[4], now_s, head)
    if code == 1 then
      redis.call('ZADD', KEYS[2], deadline, run)
      out[#out + 1] = {run, 1, redis.call('HGETALL', key[2]), redis.call('HGETALL', key[3])}
    else
      out[#out + 1] = {run, code}
    end
  else
    out[#out + 1] = {id, -2}
  end
end
return out
"""
)

# Accept a run in one step: its metadata, its run.queued event, its place in the
# runs index and its work message. A run is either wholly accepted or not at all.
# A run whose shipped code the server no longer has (flushed, restarted without
# persistence, expired) is refused, for the client to ship it again; code in use
# has its expiry pushed back (never onto deployed code, which has none).
# (Standalone servers only: on Cluster these keys live on different slots, and
# the client writes them in this order instead.)
# KEYS: meta, log, runs index, work stream[, code]
# ARGV: run_id, created_at, queued_event_json, code_ttl_s, then metadata field/value pairs
# -> 1 accepted, 0 the code is missing
SUBMIT = """
if KEYS[5] then
  if redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
  redis.call('EXPIRE', KEYS[5], ARGV[4], 'GT')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
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

# Append (event_json, step or '', result blob or '') triples from ARGV[first] to
# ARGV[last]; with a step, its result is recorded in the same atomic step as its
# event, so a finished step is never both absent and reported.
_APPEND_EVENTS = """
local function append_events(log, steps, first, last)
  for i = first, last, 3 do
    if ARGV[i + 1] ~= '' then redis.call('HSET', steps, ARGV[i + 1], ARGV[i + 2]) end
    redis.call('XADD', log, '*', 'e', ARGV[i])
  end
end
"""

# Append events while holding the run's lease.
# KEYS: log, lease, steps  ARGV: worker, then event triples
# -> 1, or 0 if the lease is lost (nothing written)
APPEND = (
    _APPEND_EVENTS
    + """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
append_events(KEYS[1], KEYS[3], 2, #ARGV)
return 1
"""
)

# End a run held by this worker, after appending the events it still had pending.
# On a standalone server the run also leaves the lease index (KEYS[5]); on Cluster
# the worker removes it itself.
# KEYS: lease, meta, log, steps[, lease index]
# ARGV: worker, status, event_json, retention_s, run_id, n, then n event triples,
#       then metadata field/value pairs -> 1, or 0 if the lease is lost (nothing written)
FINISH = (
    _APPEND_EVENTS
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local fields = 7 + 3 * tonumber(ARGV[6])
append_events(KEYS[3], KEYS[4], 7, fields - 1)
redis.call('DEL', KEYS[1])
if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[5]) end
redis.call('HSET', KEYS[2], 'status', ARGV[2])
for i = fields, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[4])
return 1
"""
)

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
