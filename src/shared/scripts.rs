//! The Lua scripts: each runs atomically in Redis and takes its time from `TIME`, so replica
//! clocks do not matter. The client loads them again after a `NOSCRIPT` (a restarted Redis).

use redis::Script;
use std::sync::LazyLock;

/// GCRA with a throttling pause and a recovering rate factor. KEYS[1]: the budget's hash;
/// ARGV: emission interval (ms, at full rate), burst, longest wait (ms), recovery time (ms).
/// Returns {1, wait_ms} (slot reserved) or {0, retry_after_ms}.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'tat', 'pause', 'factor', 'cut')
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local recovery = tonumber(ARGV[4])
local tat = tonumber(h[1]) or now
local pause = tonumber(h[2]) or 0
local factor = tonumber(h[3]) or 1
local cut = tonumber(h[4]) or now
if factor < 1 then factor = math.min(1, factor + (now - cut) / recovery) end
local step = interval / factor
local start = math.max(tat, now)
local wait = math.max(0, start - now - step * (burst - 1))
if pause > now then wait = math.max(wait, pause - now) end
if wait > max_wait then return {0, math.ceil(wait)} end
redis.call('HSET', KEYS[1], 'tat', tostring(start + step))
redis.call('PEXPIRE', KEYS[1], math.ceil(step * burst + math.max(0, pause - now)) + 60000)
return {1, math.ceil(wait)}
",
    )
});

/// Throttling: pause the budget until now + ARGV[1] ms; halve its (recovered) rate factor
/// unless it was cut within the cool-down ARGV[2] ms. ARGV[3]: recovery time (ms).
pub static THROTTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'pause', 'factor', 'cut')
local pause = tonumber(h[1]) or 0
local factor = tonumber(h[2]) or 1
local cut = tonumber(h[3])
local recovery = tonumber(ARGV[3])
local until_ms = now + tonumber(ARGV[1])
if until_ms > pause then redis.call('HSET', KEYS[1], 'pause', until_ms) end
if cut == nil or now - cut >= tonumber(ARGV[2]) then
  if cut ~= nil and factor < 1 then factor = math.min(1, factor + (now - cut) / recovery) end
  factor = math.max(0.01, factor / 2)
  redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'cut', now)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) + recovery + 60000)
return 1
",
    )
});

/// Takes or renews a lease: KEYS[1] the lease, ARGV[1] this replica, ARGV[2] its lifetime (ms).
/// Returns 1 while held by this replica.
pub static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Releases a lease held by ARGV[1] (compare and delete).
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// Stores the latest status (KEYS[2]) while ARGV[1] holds the lease (KEYS[1]); ARGV[2] the
/// bytes, ARGV[3] their lifetime (ms).
pub static PUT_LATEST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// A replica's heartbeat: KEYS[1] the replicas' sorted set, ARGV[1] this replica, ARGV[2] how
/// long one counts (ms). Returns the replicas alive.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
",
    )
});

/// Stores a record unless one exists. KEYS[1]: the record; ARGV: the value, its lifetime (ms).
/// Returns the existing value, or false when this one was stored.
pub static PUT_IF_ABSENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
",
    )
});

/// Replaces a record only if it still holds what the caller read (compare and set). KEYS[1]:
/// the record; ARGV: the value read, the new value, its lifetime (ms). Returns 1 if replaced.
pub static REPLACE_IF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// Writes a journal entry and announces it. KEYS[1]: the ordered index, KEYS[2]: the entry;
/// ARGV: the entry's id, its start (ms, the index's order), the entry, the longest age (ms), the
/// most entries kept, the channel. Entries past the age or the count leave the index (their
/// own keys expire by themselves).
pub static JOURNAL_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1) end
redis.call('PUBLISH', ARGV[6], ARGV[3])
return 1
",
    )
});

/// A turn in a FIFO queue of tickets. KEYS[1]: the queue (a list); ARGV: the ticket
/// (`id:expires_ms`), the queue's lifetime (ms). Tickets at the head past their expiry (their
/// holder gave up or died) are dropped; the ticket joins the tail if absent. Returns 1 when the
/// ticket is at the head (its turn), else 0.
pub static QUEUE_TURN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = redis.call('LINDEX', KEYS[1], 0)
while head do
  local expires = tonumber(string.match(head, ':(%d+)$'))
  if expires and expires < now and head ~= ARGV[1] then
    redis.call('LPOP', KEYS[1])
    head = redis.call('LINDEX', KEYS[1], 0)
  else
    break
  end
end
if not redis.call('LPOS', KEYS[1], ARGV[1]) then
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then return 1 end
return 0
",
    )
});
