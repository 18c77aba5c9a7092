-- The job queue (SQLite). Times are microseconds since the Unix epoch.
CREATE TABLE manifold_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ns TEXT NOT NULL,
    id TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT,
    timeout_ms BIGINT,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    queued_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    progress DOUBLE PRECISION,
    progress_total DOUBLE PRECISION,
    progress_message TEXT,
    result TEXT,
    error TEXT,
    worker TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    stop_requested BOOLEAN NOT NULL DEFAULT FALSE,
    origin_instance TEXT,
    origin_session BIGINT,
    UNIQUE (ns, id)
);
CREATE INDEX manifold_jobs_by_state ON manifold_jobs (state, seq);
CREATE INDEX manifold_jobs_by_worker ON manifold_jobs (worker, state);
CREATE INDEX manifold_jobs_by_finished ON manifold_jobs (finished_at);
