//! The inventory on disk: one SQLite database under `--data-dir`, so what was learnt
//! survives restarts and crashes. Writes are batched per flush interval; WAL mode keeps
//! every committed flush even when the agent is killed mid-write.

mod migrate;

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use rusqlite::{params, Connection};
use thiserror::Error;

use crate::inventory::{book::Endpoint, stats::EndpointStats, EndpointKey, Inventory};

pub(crate) const DB_FILE: &str = "inventory.db";

#[derive(Debug, Error)]
pub(crate) enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("database {path} has schema version {found}, newer than this agent understands ({known}); use a newer agent or another --data-dir")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot move the unreadable database {from} aside to {to}: {source}")]
    MoveAside {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database {path}: endpoint {service} {method} {route} has unreadable statistics: {source}"
    )]
    Row {
        path: PathBuf,
        service: String,
        method: String,
        route: String,
        source: serde_json::Error,
    },
}

pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database in `dir` and migrates it to the current schema.
    pub(crate) fn open(dir: &Path) -> Result<Store, StoreError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::Dir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let path = dir.join(DB_FILE);
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        // Callers and routes are not secrets, but they are nobody else's business either.
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        migrate::run(&mut conn, &path)?;
        Ok(Store { conn, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Every stored endpoint.
    pub(crate) fn load(&self) -> Result<Vec<(EndpointKey, EndpointStats)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT service, method, route, stats FROM endpoints")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    EndpointKey {
                        service: r.get(0)?,
                        method: r.get(1)?,
                        route: r.get(2)?,
                    },
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, json) = row.map_err(|e| self.sql(e))?;
            let stats = serde_json::from_str(&json).map_err(|source| StoreError::Row {
                path: self.path.clone(),
                service: key.service.clone(),
                method: key.method.clone(),
                route: key.route.clone(),
                source,
            })?;
            out.push((key, stats));
        }
        Ok(out)
    }

    /// Writes one flush in one transaction: all of it lands or none of it.
    pub(crate) fn write(
        &mut self,
        upserts: &[(EndpointKey, Endpoint)],
        removed: &[EndpointKey],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut del = tx
                .prepare_cached(
                    "DELETE FROM endpoints WHERE service = ?1 AND method = ?2 AND route = ?3",
                )
                .map_err(sql)?;
            for k in removed {
                del.execute(params![k.service, k.method, k.route])
                    .map_err(sql)?;
            }
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO endpoints (service, method, route, spec_status, calls, first_seen_us, last_seen_us, stats)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (service, method, route) DO UPDATE SET
                       spec_status = excluded.spec_status, calls = excluded.calls,
                       first_seen_us = excluded.first_seen_us, last_seen_us = excluded.last_seen_us,
                       stats = excluded.stats",
                )
                .map_err(sql)?;
            for (k, e) in upserts {
                let stats = serde_json::to_string(&e.stats).expect("stats serialise");
                up.execute(params![
                    k.service,
                    k.method,
                    k.route,
                    e.spec_status.as_str(),
                    e.stats.calls as i64,
                    e.stats.first_seen_us,
                    e.stats.last_seen_us,
                    stats
                ])
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }
}

/// A database that could not be read at start, kept under a new name so that the agent
/// runs (starting empty) instead of failing at every restart.
#[derive(Debug)]
pub(crate) struct MovedAside {
    pub to: PathBuf,
    pub reason: StoreError,
}

/// What a start found on disk.
pub(crate) struct Opened {
    pub store: Store,
    pub rows: Vec<(EndpointKey, EndpointStats)>,
    pub moved_aside: Option<MovedAside>,
}

/// Opens and reads the database in `dir`. One that is not a readable inventory (corrupt,
/// not a database, rows that do not parse) is renamed `inventory.db.unreadable-SECONDS`,
/// with its journal files, and a new one is made. Not moved: a schema from a newer agent
/// (its data is not ours to put away), a database another process holds locked, a data
/// directory that cannot be made.
pub(crate) fn open_or_move_aside(dir: &Path) -> Result<Opened, StoreError> {
    let reason = match Store::open(dir).and_then(|store| Ok((store.load()?, store))) {
        Ok((rows, store)) => {
            return Ok(Opened {
                store,
                rows,
                moved_aside: None,
            })
        }
        Err(e) if !unreadable(&e) => return Err(e),
        Err(e) => e,
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Never over an earlier one: each is somebody's data.
    let to = (0..1000)
        .map(|n| match n {
            0 => dir.join(format!("{DB_FILE}.unreadable-{stamp}")),
            n => dir.join(format!("{DB_FILE}.unreadable-{stamp}-{n}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join(format!("{DB_FILE}.unreadable")));
    for suffix in ["", "-wal", "-shm"] {
        let from = dir.join(format!("{DB_FILE}{suffix}"));
        if from.exists() {
            let dest = PathBuf::from(format!("{}{suffix}", to.display()));
            fs::rename(&from, &dest).map_err(|source| StoreError::MoveAside {
                from: from.clone(),
                to: dest.clone(),
                source,
            })?;
        }
    }
    Ok(Opened {
        store: Store::open(dir)?,
        rows: Vec::new(),
        moved_aside: Some(MovedAside { to, reason }),
    })
}

fn unreadable(e: &StoreError) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e {
        StoreError::Row { .. } => true,
        StoreError::Sqlite { source, .. } => !matches!(
            source.sqlite_error_code(),
            Some(DatabaseBusy | DatabaseLocked)
        ),
        StoreError::Dir { .. } | StoreError::TooNew { .. } | StoreError::MoveAside { .. } => false,
    }
}

/// Loads stored endpoints into `inv`, up to its `max_endpoints`; returns (restored, left
/// out because the inventory was full).
pub(crate) fn restore(
    rows: Vec<(EndpointKey, EndpointStats)>,
    inv: &mut Inventory,
) -> (usize, usize) {
    let total = rows.len();
    let mut restored = 0;
    for (k, stats) in rows {
        restored += usize::from(inv.restore(k, stats));
    }
    inv.restored();
    (restored, total - restored)
}

/// Databases found unreadable at start and moved aside.
pub(crate) fn recoveries(registry: &mut Registry) -> Counter {
    crate::metrics::register(
        registry,
        "monitor_store_recoveries",
        "Inventory databases found unreadable at start and moved aside (kept, renamed); the agent started empty",
    )
}

/// Inventory flushes that failed, exported so a full or read-only disk is seen before the
/// agent restarts without its history.
pub(crate) fn flush_errors(registry: &mut Registry) -> Counter {
    crate::metrics::register(
        registry,
        "monitor_store_errors",
        "Inventory flushes that could not be written to the database (retried)",
    )
}

/// Flushes the inventory's changes every `interval`, and once more when stopped.
pub(crate) fn spawn_flusher(
    mut store: Store,
    inv: Arc<Mutex<Inventory>>,
    interval: Duration,
    stop: Arc<AtomicBool>,
    errors: Counter,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("store".into()).spawn(move || {
        let mut last = Instant::now();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if stopping || last.elapsed() >= interval {
                last = Instant::now();
                let (upserts, removed) = match inv.lock() {
                    Ok(mut i) => i.take_changes(),
                    Err(_) => return,
                };
                if !(upserts.is_empty() && removed.is_empty()) {
                    if let Err(e) = store.write(&upserts, &removed) {
                        errors.inc();
                        log::error!("inventory not saved: {e}");
                        // Try these again next time.
                        if let Ok(mut i) = inv.lock() {
                            i.requeue(upserts, removed);
                        }
                    }
                }
            }
            if stopping {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    })
}

#[cfg(test)]
mod tests;
