-- table call_counts on call_counts
CREATE TABLE call_counts (
    host_key TEXT NOT NULL,          -- the host, else the server address, else 'unknown'
    slot INTEGER NOT NULL,           -- ts / 10 s
    session TEXT NOT NULL,           -- session_id, '' when there is none
    has_session INTEGER NOT NULL,
    named INTEGER NOT NULL,          -- host is not null
    class INTEGER NOT NULL,          -- the timeline's status class: 0 ok, 1 4xx, 2 5xx, 3 network
    calls INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    http_calls INTEGER NOT NULL,     -- kind http with a latency
    dns_calls INTEGER NOT NULL,
    bytes INTEGER NOT NULL,          -- as the summary counts them
    last_failure_ts INTEGER,
    last_ts INTEGER NOT NULL,        -- the latest end (or start) of a call
    PRIMARY KEY (host_key, slot, session, has_session, named, class)
) WITHOUT ROWID;
-- table calls on calls
CREATE TABLE calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ts INTEGER NOT NULL,
    ended_at INTEGER,
    latency_ms REAL,
    connection_id TEXT,
    stream_id INTEGER,
    estimated INTEGER NOT NULL DEFAULT 0,
    session_id TEXT,
    attribution TEXT,
    pid INTEGER,
    process TEXT,
    exe TEXT,
    cgroup TEXT,
    agent TEXT,
    target TEXT,
    client_ip TEXT,
    client_port INTEGER,
    server_ip TEXT,
    server_port INTEGER,
    scheme TEXT,
    host TEXT,
    method TEXT,
    path TEXT,
    url TEXT,
    status_code INTEGER,
    http_version TEXT,
    request_content_type TEXT,
    response_content_type TEXT,
    request_body_bytes INTEGER,
    response_body_bytes INTEGER,
    request_summary TEXT,
    response_summary TEXT,
    sni TEXT,
    alpn TEXT,
    alpn_offered TEXT,
    tls_version TEXT,
    tls_cipher TEXT,
    ja4 TEXT,
    cert_subject TEXT,
    cert_san TEXT,
    dns_qtype TEXT,
    dns_rcode TEXT,
    dns_answers TEXT,
    connect_ms REAL,
    tls_handshake_ms REAL,
    ttfb_ms REAL,
    outcome TEXT NOT NULL,
    error TEXT,
    weirds TEXT,
    missed_bytes INTEGER NOT NULL DEFAULT 0,
    visibility TEXT,
    bytes_sent INTEGER,
    bytes_received INTEGER
, owner_source TEXT, trace_id TEXT, parent_span_id TEXT, attribution_key TEXT, llm_provider TEXT, llm_model TEXT, llm_input_tokens INTEGER, llm_output_tokens INTEGER, llm_cache_read_tokens INTEGER, llm_ttft_ms REAL, llm_stop_reason TEXT, llm_tool_calls TEXT, proxy TEXT);
-- trigger calls_counts_delete on calls
CREATE TRIGGER calls_counts_delete AFTER DELETE ON calls BEGIN UPDATE call_counts SET calls = calls - 1, failures = failures - (OLD.outcome <> 'ok'),
    http_calls = http_calls - (OLD.kind = 'http' AND OLD.latency_ms IS NOT NULL), dns_calls = dns_calls - (OLD.kind = 'dns'), bytes = bytes - (COALESCE(OLD.request_body_bytes, 0) + COALESCE(OLD.response_body_bytes, 0) + CASE WHEN OLD.kind <> 'http' THEN COALESCE(OLD.bytes_sent, 0) + COALESCE(OLD.bytes_received, 0) ELSE 0 END),
    last_failure_ts = CASE WHEN failures - (OLD.outcome <> 'ok') <= 0 THEN NULL
        WHEN NOT (OLD.outcome <> 'ok') OR OLD.ts < last_failure_ts THEN last_failure_ts
        ELSE (SELECT MAX(ts) FROM calls WHERE ts >= OLD.ts / 10000000 * 10000000 AND ts < (OLD.ts / 10000000 + 1) * 10000000 AND COALESCE(host, server_ip, 'unknown') = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND COALESCE(session_id, '') = COALESCE(OLD.session_id, '') AND (session_id IS NOT NULL) = (OLD.session_id IS NOT NULL) AND (host IS NOT NULL) = (OLD.host IS NOT NULL) AND CASE WHEN status_code >= 500 THEN 2 WHEN status_code >= 400 THEN 1 WHEN outcome = 'ok' THEN 0 ELSE 3 END = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END AND (outcome <> 'ok')) END,
    last_ts = CASE WHEN calls - 1 <= 0 OR COALESCE(OLD.ended_at, OLD.ts) < last_ts THEN last_ts
        ELSE (SELECT MAX(COALESCE(ended_at, ts)) FROM calls WHERE ts >= OLD.ts / 10000000 * 10000000 AND ts < (OLD.ts / 10000000 + 1) * 10000000 AND COALESCE(host, server_ip, 'unknown') = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND COALESCE(session_id, '') = COALESCE(OLD.session_id, '') AND (session_id IS NOT NULL) = (OLD.session_id IS NOT NULL) AND (host IS NOT NULL) = (OLD.host IS NOT NULL) AND CASE WHEN status_code >= 500 THEN 2 WHEN status_code >= 400 THEN 1 WHEN outcome = 'ok' THEN 0 ELSE 3 END = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END) END
WHERE host_key = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND slot = OLD.ts / 10000000 AND session = COALESCE(OLD.session_id, '') AND has_session = (OLD.session_id IS NOT NULL) AND named = (OLD.host IS NOT NULL) AND class = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END;
DELETE FROM call_counts WHERE calls <= 0 AND host_key = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND slot = OLD.ts / 10000000 AND session = COALESCE(OLD.session_id, '') AND has_session = (OLD.session_id IS NOT NULL) AND named = (OLD.host IS NOT NULL) AND class = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END; END;
-- trigger calls_counts_insert on calls
CREATE TRIGGER calls_counts_insert AFTER INSERT ON calls BEGIN INSERT INTO call_counts (host_key, slot, session, has_session, named, class, calls, failures, http_calls, dns_calls, bytes, last_failure_ts, last_ts)
VALUES (COALESCE(NEW.host, NEW.server_ip, 'unknown'), NEW.ts / 10000000, COALESCE(NEW.session_id, ''), (NEW.session_id IS NOT NULL), (NEW.host IS NOT NULL), CASE WHEN NEW.status_code >= 500 THEN 2 WHEN NEW.status_code >= 400 THEN 1 WHEN NEW.outcome = 'ok' THEN 0 ELSE 3 END, 1, (NEW.outcome <> 'ok'), (NEW.kind = 'http' AND NEW.latency_ms IS NOT NULL), (NEW.kind = 'dns'), COALESCE(NEW.request_body_bytes, 0) + COALESCE(NEW.response_body_bytes, 0) + CASE WHEN NEW.kind <> 'http' THEN COALESCE(NEW.bytes_sent, 0) + COALESCE(NEW.bytes_received, 0) ELSE 0 END,
        CASE WHEN (NEW.outcome <> 'ok') THEN NEW.ts END, COALESCE(NEW.ended_at, NEW.ts))
ON CONFLICT DO UPDATE SET calls = calls + 1, failures = failures + excluded.failures,
    http_calls = http_calls + excluded.http_calls, dns_calls = dns_calls + excluded.dns_calls,
    bytes = bytes + excluded.bytes, last_failure_ts = max(COALESCE(last_failure_ts, excluded.last_failure_ts), COALESCE(excluded.last_failure_ts, last_failure_ts)),
    last_ts = max(last_ts, excluded.last_ts); END;
-- trigger calls_counts_update on calls
CREATE TRIGGER calls_counts_update AFTER UPDATE ON calls BEGIN UPDATE call_counts SET calls = calls - 1, failures = failures - (OLD.outcome <> 'ok'),
    http_calls = http_calls - (OLD.kind = 'http' AND OLD.latency_ms IS NOT NULL), dns_calls = dns_calls - (OLD.kind = 'dns'), bytes = bytes - (COALESCE(OLD.request_body_bytes, 0) + COALESCE(OLD.response_body_bytes, 0) + CASE WHEN OLD.kind <> 'http' THEN COALESCE(OLD.bytes_sent, 0) + COALESCE(OLD.bytes_received, 0) ELSE 0 END),
    last_failure_ts = CASE WHEN failures - (OLD.outcome <> 'ok') <= 0 THEN NULL
        WHEN NOT (OLD.outcome <> 'ok') OR OLD.ts < last_failure_ts THEN last_failure_ts
        ELSE (SELECT MAX(ts) FROM calls WHERE ts >= OLD.ts / 10000000 * 10000000 AND ts < (OLD.ts / 10000000 + 1) * 10000000 AND COALESCE(host, server_ip, 'unknown') = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND COALESCE(session_id, '') = COALESCE(OLD.session_id, '') AND (session_id IS NOT NULL) = (OLD.session_id IS NOT NULL) AND (host IS NOT NULL) = (OLD.host IS NOT NULL) AND CASE WHEN status_code >= 500 THEN 2 WHEN status_code >= 400 THEN 1 WHEN outcome = 'ok' THEN 0 ELSE 3 END = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END AND (outcome <> 'ok')) END,
    last_ts = CASE WHEN calls - 1 <= 0 OR COALESCE(OLD.ended_at, OLD.ts) < last_ts THEN last_ts
        ELSE (SELECT MAX(COALESCE(ended_at, ts)) FROM calls WHERE ts >= OLD.ts / 10000000 * 10000000 AND ts < (OLD.ts / 10000000 + 1) * 10000000 AND COALESCE(host, server_ip, 'unknown') = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND COALESCE(session_id, '') = COALESCE(OLD.session_id, '') AND (session_id IS NOT NULL) = (OLD.session_id IS NOT NULL) AND (host IS NOT NULL) = (OLD.host IS NOT NULL) AND CASE WHEN status_code >= 500 THEN 2 WHEN status_code >= 400 THEN 1 WHEN outcome = 'ok' THEN 0 ELSE 3 END = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END) END
WHERE host_key = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND slot = OLD.ts / 10000000 AND session = COALESCE(OLD.session_id, '') AND has_session = (OLD.session_id IS NOT NULL) AND named = (OLD.host IS NOT NULL) AND class = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END;
DELETE FROM call_counts WHERE calls <= 0 AND host_key = COALESCE(OLD.host, OLD.server_ip, 'unknown') AND slot = OLD.ts / 10000000 AND session = COALESCE(OLD.session_id, '') AND has_session = (OLD.session_id IS NOT NULL) AND named = (OLD.host IS NOT NULL) AND class = CASE WHEN OLD.status_code >= 500 THEN 2 WHEN OLD.status_code >= 400 THEN 1 WHEN OLD.outcome = 'ok' THEN 0 ELSE 3 END; INSERT INTO call_counts (host_key, slot, session, has_session, named, class, calls, failures, http_calls, dns_calls, bytes, last_failure_ts, last_ts)
VALUES (COALESCE(NEW.host, NEW.server_ip, 'unknown'), NEW.ts / 10000000, COALESCE(NEW.session_id, ''), (NEW.session_id IS NOT NULL), (NEW.host IS NOT NULL), CASE WHEN NEW.status_code >= 500 THEN 2 WHEN NEW.status_code >= 400 THEN 1 WHEN NEW.outcome = 'ok' THEN 0 ELSE 3 END, 1, (NEW.outcome <> 'ok'), (NEW.kind = 'http' AND NEW.latency_ms IS NOT NULL), (NEW.kind = 'dns'), COALESCE(NEW.request_body_bytes, 0) + COALESCE(NEW.response_body_bytes, 0) + CASE WHEN NEW.kind <> 'http' THEN COALESCE(NEW.bytes_sent, 0) + COALESCE(NEW.bytes_received, 0) ELSE 0 END,
        CASE WHEN (NEW.outcome <> 'ok') THEN NEW.ts END, COALESCE(NEW.ended_at, NEW.ts))
ON CONFLICT DO UPDATE SET calls = calls + 1, failures = failures + excluded.failures,
    http_calls = http_calls + excluded.http_calls, dns_calls = dns_calls + excluded.dns_calls,
    bytes = bytes + excluded.bytes, last_failure_ts = max(COALESCE(last_failure_ts, excluded.last_failure_ts), COALESCE(excluded.last_failure_ts, last_failure_ts)),
    last_ts = max(last_ts, excluded.last_ts); END;
-- index calls_host_latency on calls
CREATE INDEX calls_host_latency ON calls(COALESCE(host, server_ip, 'unknown'), latency_ms, ts, session_id, kind,
    host, server_ip) WHERE kind = 'http' AND latency_ms IS NOT NULL;
-- index calls_host_ts on calls
CREATE INDEX calls_host_ts ON calls(host, ts);
-- index calls_session_ts on calls
CREATE INDEX calls_session_ts ON calls(session_id, ts);
-- index calls_timeline on calls
CREATE INDEX calls_timeline ON calls(ts, session_id, host, server_ip, outcome, status_code);
-- index calls_ts on calls
CREATE INDEX calls_ts ON calls(ts);
-- table capture_stats on capture_stats
CREATE TABLE capture_stats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at INTEGER NOT NULL,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL
);
-- index capture_stats_name_value on capture_stats
CREATE INDEX capture_stats_name_value ON capture_stats(name, value);
-- index capture_stats_recorded on capture_stats
CREATE INDEX capture_stats_recorded ON capture_stats(recorded_at);
-- table export_cursor on export_cursor
CREATE TABLE export_cursor (
    name TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    pruned_unexported INTEGER NOT NULL DEFAULT 0,
    last_success_at INTEGER,
    last_error TEXT
);
-- table grdb_migrations on grdb_migrations
CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
-- index sqlite_autoindex_export_cursor_1 on export_cursor
(no sql: made by SQLite for a constraint);
-- index sqlite_autoindex_grdb_migrations_1 on grdb_migrations
(no sql: made by SQLite for a constraint);
-- table sqlite_sequence on sqlite_sequence
CREATE TABLE sqlite_sequence(name,seq);
