//! Tests of the SQL writer: each record goes to its kind's table once, and a record that does
//! not read as its kind's schemas type (a field missing or misspelled) is refused, never stored
//! with an empty value. Run by `cargo test -p tablewire-handlers`.

use super::*;
use serde_json::json;

async fn count(pool: &Pool, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.expect("count");
    n
}

#[tokio::test]
async fn a_record_goes_to_its_kinds_table_once_and_only_unknown_kinds_to_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = store::connect(&format!("sqlite://{}/w.db", dir.path().display()))
        .await
        .expect("connect");
    let scan = Record {
        kind: device::SCAN.to_string(),
        id: "reader-1:7".to_string(),
        tenant: "t1".to_string(),
        data: json!({"scan": {"id": "reader-1:7", "deviceId": "reader-1", "tagId": "T1",
                              "location": "door", "timestamp": 1_700_000_000_000_i64,
                              "registered": false},
                     "user": null}),
    };
    let other = Record {
        kind: "something_new".to_string(),
        id: "x1".to_string(),
        tenant: "t1".to_string(),
        data: json!({"a": 1}),
    };
    for _ in 0..2 {
        write_batch(&pool, &[&scan, &other]).await.expect("batch");
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM device_scans").await, 1);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM records").await,
        1,
        "only the kind without a table is kept as JSON"
    );
}

/// `data["sessionId"].as_str().unwrap_or_default()` stored a display session under an
/// empty id when the field was misspelled; such a record is refused (and parked by the
/// writer), never stored empty.
#[tokio::test]
async fn a_record_that_does_not_read_as_its_kind_is_refused_not_stored_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = store::connect(&format!("sqlite://{}/w.db", dir.path().display()))
        .await
        .expect("connect");
    let misspelled = Record {
        kind: display::SESSION.to_string(),
        id: "display:t1.s1:3:0".to_string(),
        tenant: "t1".to_string(),
        data: json!({"sessionID": "s1", "tenantId": "t1", "startedAt": 1, "version": 3}),
    };
    let written = write_batch(&pool, &[&misspelled]).await;
    assert!(
        matches!(&written, Err(WriteError::Unreadable(why)) if why.contains("sessionId")),
        "a misspelled record is refused as unreadable: {written:?}"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM display_sessions").await,
        0,
        "nothing stored under an empty session id"
    );
}

async fn pool(dir: &tempfile::TempDir) -> Pool {
    store::connect(&format!("sqlite://{}/w.db", dir.path().display()))
        .await
        .expect("connect")
}

/// `data` with the key `from` (inside the object at `path`) renamed to `to`.
fn misspelled(
    mut data: serde_json::Value,
    path: &[&str],
    from: &str,
    to: &str,
) -> serde_json::Value {
    let mut at = &mut data;
    for key in path {
        at = &mut at[*key];
    }
    if let Some(map) = at.as_object_mut()
        && let Some(value) = map.remove(from)
    {
        map.insert(to.to_string(), value);
    }
    data
}

/// For each `(kind, valid data, where, field, table)`: the record with `field` misspelled is
/// refused as unreadable (its reason names the field) and leaves `table` empty; the valid one
/// is then stored there.
async fn refused_when_misspelled_then_stored(
    cases: Vec<(&str, serde_json::Value, &[&str], &str, &'static str)>,
) {
    for (kind, valid, path, field, table) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir).await;
        let record = |data: serde_json::Value| Record {
            kind: kind.to_string(),
            id: format!("{kind}:1"),
            tenant: "t1".to_string(),
            data,
        };
        let typo = format!("{}X", field.to_lowercase());
        let bad = record(misspelled(valid.clone(), path, field, &typo));
        let written = write_batch(&pool, &[&bad]).await;
        assert!(
            matches!(&written, Err(WriteError::Unreadable(why)) if why.contains(field)),
            "{kind} without {field} is refused as unreadable: {written:?}"
        );
        let sql = match table {
            "collab_orders" => "SELECT COUNT(*) FROM collab_orders",
            "collab_archives" => "SELECT COUNT(*) FROM collab_archives",
            "pos_orders" => "SELECT COUNT(*) FROM pos_orders",
            "pos_order_status" => "SELECT COUNT(*) FROM pos_order_status",
            "device_scans" => "SELECT COUNT(*) FROM device_scans",
            "device_tags" => "SELECT COUNT(*) FROM device_tags",
            _ => "SELECT COUNT(*) FROM device_configs",
        };
        assert_eq!(
            count(&pool, sql).await,
            0,
            "{kind}: nothing stored in {table}"
        );
        write_batch(&pool, &[&record(valid)])
            .await
            .unwrap_or_else(|e| panic!("{kind}: the valid record is written: {e}"));
        assert_eq!(
            count(&pool, sql).await,
            1,
            "{kind}: the valid record is in {table}"
        );
    }
}

#[tokio::test]
async fn a_collab_record_missing_a_field_is_refused_not_stored() {
    let order = serde_json::to_value(tablewire_schemas::collab::OrderState::new("t1", "room1", 5))
        .expect("order");
    refused_when_misspelled_then_stored(vec![
        (
            collab::ORDER,
            order.clone(),
            &[],
            "sessionId",
            "collab_orders",
        ),
        (
            collab::ARCHIVE,
            json!({"archivedAt": 9, "order": order}),
            &[],
            "archivedAt",
            "collab_archives",
        ),
    ])
    .await;
}

#[tokio::test]
async fn a_pos_record_missing_a_field_is_refused_not_stored() {
    let order = json!({"id": "order-1", "orderNumber": "ORD-20250101-001", "tenantId": "t1",
                       "orderType": "dine-in", "cart": {"items": []}, "status": "pending",
                       "createdAt": 1, "updatedAt": 1});
    refused_when_misspelled_then_stored(vec![
        (pos::ORDER, order.clone(), &[], "orderNumber", "pos_orders"),
        (
            pos::STATUS,
            json!({"orderId": "order-1", "orderNumber": "ORD-20250101-001",
                   "status": "preparing", "previousStatus": "pending", "updatedBy": "k1",
                   "at": 2, "order": null}),
            &[],
            "orderId",
            "pos_order_status",
        ),
    ])
    .await;
}

#[tokio::test]
async fn a_device_record_missing_a_field_is_refused_not_stored() {
    refused_when_misspelled_then_stored(vec![
        (
            device::SCAN,
            json!({"scan": {"id": "r1:7", "deviceId": "r1", "tagId": "T1", "location": null,
                            "timestamp": 1, "registered": false},
                   "user": null}),
            &["scan"],
            "tagId",
            "device_scans",
        ),
        (
            device::TAG,
            json!({"tagId": "T1", "deviceId": "r1", "registeredAt": 1}),
            &[],
            "tagId",
            "device_tags",
        ),
        (
            device::CONFIG,
            json!({"deviceId": "r1", "config": {"registrationMode": true}, "version": 3}),
            &[],
            "deviceId",
            "device_configs",
        ),
    ])
    .await;
}
