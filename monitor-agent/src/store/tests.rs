use std::path::PathBuf;

use super::{migrate::SCHEMA_VERSION, *};
use crate::inventory::{book::Endpoint, stats::Observation, SpecStatus};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("monitor-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn endpoint(calls: u64) -> Endpoint {
    let mut stats = EndpointStats::default();
    for i in 0..calls {
        stats.observe(&Observation {
            ts_us: 1_000 + i as i64,
            status: 200,
            duration_us: 100,
            caller: "curl",
            auth: "none",
            ..Default::default()
        });
    }
    Endpoint {
        stats,
        spec_status: SpecStatus::Shadow,
        operation_id: None,
    }
}

fn key(route: &str) -> EndpointKey {
    EndpointKey {
        service: "users".into(),
        method: "GET".into(),
        route: route.into(),
    }
}

#[test]
fn writes_survive_reopening() {
    let dir = temp_dir("reopen");
    {
        let mut s = Store::open(&dir).unwrap();
        s.write(&[(key("/a"), endpoint(3)), (key("/b"), endpoint(1))], &[])
            .unwrap();
        s.write(&[(key("/a"), endpoint(5))], &[key("/b")]).unwrap();
    }
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let s = Store::open(&dir).unwrap();
    let rows = s.load().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, key("/a"));
    assert_eq!(rows[0].1.calls, 5);
    assert_eq!(rows[0].1.callers["curl"], 5);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn old_schema_is_migrated_forward() {
    let dir = temp_dir("migrate");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(DB_FILE);
    {
        let mut c = Connection::open(&path).unwrap();
        migrate::run_to(&mut c, &path, 1).unwrap();
        c.execute(
            "INSERT INTO endpoints VALUES ('users','GET','/old','shadow',2,1,2,?1)",
            [serde_json::to_string(&endpoint(2).stats).unwrap()],
        )
        .unwrap();
    }
    let s = Store::open(&dir).unwrap();
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let rows = s.load().unwrap();
    assert_eq!(rows[0].0.route, "/old");
    assert_eq!(rows[0].1.calls, 2);
    let version: String = s
        .conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'agent_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn newer_or_broken_databases_are_refused_clearly() {
    let dir = temp_dir("newer");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(DB_FILE);
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let e = Store::open(&dir).err().unwrap().to_string();
    assert!(e.contains("schema version 99"), "{e}");
    fs::remove_file(&path).unwrap();
    fs::write(
        &path,
        b"this is not a database, just some text that is long enough",
    )
    .unwrap();
    let e = Store::open(&dir).err().unwrap().to_string();
    assert!(e.contains(DB_FILE), "{e}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn restore_fills_an_inventory() {
    let dir = temp_dir("restore");
    let mut s = Store::open(&dir).unwrap();
    s.write(&[(key("/users/{id}"), endpoint(4))], &[]).unwrap();
    let mut inv = Inventory::new(Default::default());
    assert_eq!(restore(s.load().unwrap(), &mut inv), (1, 0));
    assert_eq!(inv.len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn restore_stops_at_max_endpoints() {
    let dir = temp_dir("restore-cap");
    let mut s = Store::open(&dir).unwrap();
    let rows: Vec<_> = (0..5)
        .map(|i| (key(&format!("/r{i}")), endpoint(1)))
        .collect();
    s.write(&rows, &[]).unwrap();
    let mut inv = Inventory::new(crate::inventory::InventoryConfig {
        max_endpoints: 3,
        ..Default::default()
    });
    assert_eq!(restore(s.load().unwrap(), &mut inv), (3, 2));
    assert_eq!(inv.len(), 3);
    assert_eq!(inv.overflow, 2);
    fs::remove_dir_all(&dir).unwrap();
}

/// Corrupt files are kept under a new name and the agent starts empty; a newer agent's
/// database and a locked one are left where they are, and refused.
#[test]
fn an_unreadable_database_is_moved_aside_and_kept() {
    let dir = temp_dir("aside");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(DB_FILE);
    let junk = b"this is not a database, just some text that is long enough".repeat(100);
    fs::write(&path, &junk).unwrap();
    let opened = open_or_move_aside(&dir).unwrap();
    let moved = opened.moved_aside.expect("moved aside");
    assert!(
        moved.reason.to_string().contains(DB_FILE),
        "{}",
        moved.reason
    );
    assert_eq!(fs::read(&moved.to).unwrap(), junk);
    assert!(opened.rows.is_empty());
    let mut store = opened.store;
    store.write(&[(key("/a"), endpoint(1))], &[]).unwrap();
    drop(store);
    let again = open_or_move_aside(&dir).unwrap();
    assert!(again.moved_aside.is_none());
    assert_eq!(again.rows.len(), 1);
    drop(again);
    {
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let e = open_or_move_aside(&dir).err().unwrap().to_string();
    assert!(e.contains("schema version 99"), "{e}");
    assert!(path.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_row_that_does_not_parse_moves_the_database_aside() {
    let dir = temp_dir("aside-row");
    let mut s = Store::open(&dir).unwrap();
    s.write(&[(key("/a"), endpoint(1))], &[]).unwrap();
    s.conn
        .execute("UPDATE endpoints SET stats = '{not json'", [])
        .unwrap();
    drop(s);
    let opened = open_or_move_aside(&dir).unwrap();
    let moved = opened.moved_aside.expect("moved aside");
    assert!(
        matches!(moved.reason, StoreError::Row { .. }),
        "{:?}",
        moved.reason
    );
    assert!(opened.rows.is_empty());
    fs::remove_dir_all(&dir).unwrap();
}
