//! The POS side of one edge ([`PosEdge`]): a tenant's order book read with its orders'
//! bodies, which this edge keeps once read. Used by the POS HTTP endpoints and socket.

use crate::node::Node;
use crate::publish::now_ms;
use std::sync::Arc;
use tablewire_nats::resource;
use tablewire_schemas::pos::{Order, PosState, TENANT_KEY, TenantOrders};
use tablewire_schemas::stored::StoredView;
use tablewire_schemas::{Domain, ErrorBody, ErrorCode};

/// The POS side of one edge: the order bodies it has read.
pub struct PosEdge {
    pub(super) node: Arc<Node>,
    order_bodies: OrderBodies,
}

impl PosEdge {
    /// The POS side of `node`.
    pub fn new(node: Arc<Node>) -> Arc<PosEdge> {
        Arc::new(PosEdge {
            node,
            order_bodies: OrderBodies::default(),
        })
    }
}

/// Most order bodies an edge keeps (~0.5 KB each); past it, it forgets them all and reads
/// again.
const ORDER_BODIES_KEPT: usize = 20_000;

/// POS order bodies this edge has read (see [`BookOrder`]). A body never changes once written
/// (order ids are never reused within a tenant; status comes from the book), so each is read
/// from KV once per edge, not on every `sync_state`: a reconnecting kitchen costs one book read.
#[derive(Default)]
pub struct OrderBodies {
    kept: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<Order>>>,
}

impl OrderBodies {
    fn get(&self, tenant: &str, order_id: &str) -> Option<Arc<Order>> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(&(tenant.to_string(), order_id.to_string()))
            .cloned()
    }

    fn keep(&self, tenant: &str, order: Order) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= ORDER_BODIES_KEPT {
            kept.clear();
        }
        kept.insert((tenant.to_string(), order.id.clone()), Arc::new(order));
    }
}

/// How long apart a fresh order's missing body is read again (doubling: 5 ms, then up to 155 ms
/// in all) before the order goes out without it.
const BODY_RETRY_DELAYS_MS: [u64; 5] = [5, 10, 20, 40, 80];
/// An order whose status changed this recently may have its body still on the way.
const FRESH_ORDER_MS: i64 = 10_000;

/// Reads the bodies of `ids` (of `tenant`'s book at `book_key`), keeping those found.
async fn fetch_bodies(
    pos: &PosEdge,
    tenant: &str,
    book_key: &str,
    ids: Vec<String>,
) -> Result<Vec<Order>, ErrorBody> {
    let bodies = futures::future::join_all(ids.iter().map(|id| {
        let key = resource::part_key(book_key, &TenantOrders::body_name(id));
        async move { pos.node.read_part(Domain::Pos, &key).await }
    }))
    .await;
    let mut found = Vec::with_capacity(bodies.len());
    for body in bodies {
        // A body KV no longer has (an order active for over a week) leaves the order without
        // its cart; one that does not parse likewise.
        if let Some(order) = body?.and_then(|b| serde_json::from_slice::<Order>(&b).ok()) {
            pos.order_bodies.keep(tenant, order.clone());
            found.push(order);
        }
    }
    Ok(found)
}

/// Attaches the bodies `fetch` finds for `wanted`. The handler sends an order's body just
/// before the book that names it, but to another stream: a book read in that moment may name a
/// body not stored yet (its write is acknowledged before anyone hears of the order). So a body
/// still missing from an order changed in the last [`FRESH_ORDER_MS`] is fetched again, after
/// each of [`BODY_RETRY_DELAYS_MS`], before the order goes out without its cart; older orders
/// without bodies (past `ORDER_BODY_TTL_MS`) are not waited for.
async fn attach_bodies<F, Fut>(
    book: &mut TenantOrders,
    mut wanted: Vec<String>,
    now_ms: i64,
    fetch: F,
) -> Result<(), ErrorBody>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Order>, ErrorBody>>,
{
    let mut delays = BODY_RETRY_DELAYS_MS.iter();
    loop {
        if !wanted.is_empty() {
            for body in fetch(wanted).await? {
                book.attach_body(&body);
            }
        }
        wanted = book.missing_bodies_changed_since(now_ms - FRESH_ORDER_MS);
        match delays.next() {
            Some(&ms) if !wanted.is_empty() => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await
            }
            _ => return Ok(()),
        }
    }
}

/// A tenant's order book with its orders' bodies (fetched beside it, see [`BookOrder`]).
pub(super) async fn read_orders(
    pos: &PosEdge,
    tenant: &str,
) -> Result<(u64, TenantOrders), ErrorBody> {
    let internal =
        |e: serde_json::Error| ErrorBody::with_message(ErrorCode::Internal, e.to_string());
    let (seq, mut book) = match pos.node.read_state(Domain::Pos, tenant, TENANT_KEY).await? {
        Some(bytes) => {
            let view: StoredView<'_> = serde_json::from_slice(&bytes).map_err(internal)?;
            match serde_json::from_str::<PosState>(view.state.get()).map_err(internal)? {
                PosState::Tenant(book) => (view.seq, book),
                PosState::Idempotency(_) => return Err(ErrorBody::new(ErrorCode::Internal)),
            }
        }
        None => return Ok((0, TenantOrders::default())),
    };
    let mut wanted: Vec<String> = Vec::new();
    for id in book.missing_bodies() {
        match pos.order_bodies.get(tenant, &id) {
            Some(body) => book.attach_body(&body),
            None => wanted.push(id),
        }
    }
    let book_key = resource::state_key(tenant, TENANT_KEY);
    attach_bodies(&mut book, wanted, now_ms(), |ids| {
        fetch_bodies(pos, tenant, &book_key, ids)
    })
    .await?;
    Ok((seq, book))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tablewire_schemas::pos::BookOrder;

    fn body(id: &str) -> Order {
        serde_json::from_value(
            serde_json::json!({"id": id, "orderNumber": "ORD-20261127-001",
            "tenantId": "t", "orderType": "takeout", "cart": {"items": []},
            "status": "pending", "createdAt": 1, "updatedAt": 1}),
        )
        .expect("order")
    }

    /// A book as readers find it: references only, every body to be fetched.
    fn stored_book(orders: &[Order]) -> TenantOrders {
        let book = TenantOrders {
            active: orders.iter().cloned().map(BookOrder::created).collect(),
            ..Default::default()
        };
        serde_json::from_str(&serde_json::to_string(&book).expect("book")).expect("read back")
    }

    const NOW: i64 = 1_800_000_000_000;

    fn order_changed(id: &str, ms_ago: i64) -> Order {
        let mut order = body(id);
        order.updated_at = NOW - ms_ago;
        order
    }

    #[tokio::test]
    async fn a_fresh_orders_body_not_stored_yet_is_read_again_until_it_is() {
        let fresh = order_changed("fresh", 50);
        let old = order_changed("old", 8 * 24 * 3600 * 1000);
        let mut book = stored_book(&[fresh.clone(), old.clone()]);
        let asked = std::sync::Mutex::new(Vec::new());
        let wanted = book.missing_bodies();
        attach_bodies(&mut book, wanted, NOW, |ids| {
            let mut asked = asked.lock().expect("lock");
            asked.push(ids.clone());
            // The fresh body is stored by the third read; the old one is gone for good.
            let found = if asked.len() >= 3 && ids.contains(&fresh.id) {
                vec![fresh.clone()]
            } else {
                Vec::new()
            };
            async move { Ok(found) }
        })
        .await
        .expect("attached");
        assert!(book.active[0].has_body(), "the fresh order has its cart");
        assert!(!book.active[1].has_body(), "the old order is shown without");
        let asked = asked.into_inner().expect("lock");
        assert_eq!(
            asked,
            vec![
                vec!["fresh".to_string(), "old".to_string()],
                vec!["fresh".to_string()],
                vec!["fresh".to_string()],
            ],
            "only the fresh order's body is read again, and not once it is found"
        );
    }

    #[tokio::test]
    async fn a_body_that_never_comes_is_waited_for_a_bounded_number_of_reads() {
        let mut book = stored_book(&[order_changed("lost", 0)]);
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let wanted = book.missing_bodies();
        attach_bodies(&mut book, wanted, NOW, |_| {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { Ok(Vec::new()) }
        })
        .await
        .expect("no error");
        assert!(!book.active[0].has_body());
        assert_eq!(
            reads.into_inner(),
            1 + BODY_RETRY_DELAYS_MS.len(),
            "the first read and one after each delay"
        );
    }

    #[test]
    fn bodies_are_kept_per_tenant_and_forgotten_past_the_limit() {
        let bodies = OrderBodies::default();
        bodies.keep("a", body("order-1"));
        assert_eq!(
            bodies.get("a", "order-1").map(|o| o.id.clone()),
            Some("order-1".into())
        );
        assert!(
            bodies.get("b", "order-1").is_none(),
            "another tenant's order-1"
        );
        for n in 2..=ORDER_BODIES_KEPT {
            bodies.keep("a", body(&format!("order-{n}")));
        }
        assert!(bodies.get("a", "order-1").is_some());
        bodies.keep("a", body("order-next"));
        assert!(
            bodies.get("a", "order-1").is_none(),
            "all forgotten at the limit"
        );
        assert!(bodies.get("a", "order-next").is_some());
    }
}
