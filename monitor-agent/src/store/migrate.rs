//! Forward-only schema migrations, tracked in SQLite's `user_version`. A database from an
//! older agent is upgraded in place; one from a newer agent is refused rather than damaged.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Each entry takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: endpoints with their statistics as JSON (the shape of the statistics evolves
    // without schema changes; serde defaults fill fields older agents did not write).
    "CREATE TABLE endpoints (
        service TEXT NOT NULL,
        method TEXT NOT NULL,
        route TEXT NOT NULL,
        spec_status TEXT NOT NULL,
        calls INTEGER NOT NULL,
        first_seen_us INTEGER NOT NULL,
        last_seen_us INTEGER NOT NULL,
        stats TEXT NOT NULL,
        PRIMARY KEY (service, method, route)
    );",
    // 2: who wrote the database, and recency queries without a table scan.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE INDEX endpoints_last_seen ON endpoints (last_seen_us);",
];

pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn run(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    run_to(conn, path, SCHEMA_VERSION)
}

pub(super) fn run_to(conn: &mut Connection, path: &Path, target: i64) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for v in found..target {
        let tx = conn.transaction().map_err(sql)?;
        tx.execute_batch(MIGRATIONS[v as usize]).map_err(sql)?;
        tx.pragma_update(None, "user_version", v + 1).map_err(sql)?;
        tx.commit().map_err(sql)?;
        if found > 0 {
            log::info!("{}: schema migrated to version {}", path.display(), v + 1);
        }
    }
    if target >= 2 {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('agent_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [env!("CARGO_PKG_VERSION")],
        )
        .map_err(sql)?;
    }
    Ok(())
}
