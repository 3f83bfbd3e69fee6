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
-- index calls_by_host on calls
CREATE INDEX calls_by_host ON calls(COALESCE(host, server_ip, 'unknown'), ts, session_id, outcome, kind,
    latency_ms, request_body_bytes, response_body_bytes, bytes_sent, bytes_received, host, server_ip);
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
