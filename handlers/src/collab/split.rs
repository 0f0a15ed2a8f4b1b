//! Splitting a room's bill: each participant's share under the split type (equal, itemized,
//! custom), the total recomputed after every change, and `update_split`. Called by the collab
//! domain's `apply`.

use super::input::invalid;
use crate::domain::Rejection;
use tablewire_schemas::collab::{OrderState, Participant, Share, SplitData, SplitType};

/// Each participant's share of `state.total` under its split type. Equal: among active
/// participants and those who left with items, in join order, the first `remainder` paying one
/// minor unit more. Itemized: the subtotals of the items each added. Custom: as supplied, and
/// no shares while no amounts were supplied (pending).
pub fn compute_splits(state: &OrderState) -> Vec<Share> {
    match state.split_type {
        SplitType::Equal => {
            let payers: Vec<&Participant> = state
                .participants
                .iter()
                .filter(|p| p.active || state.items.iter().any(|i| i.added_by == p.participant_id))
                .collect();
            let n = payers.len() as u64;
            if n == 0 {
                return Vec::new();
            }
            let (base, remainder) = (state.total / n, state.total % n);
            payers
                .iter()
                .enumerate()
                .map(|(i, p)| Share {
                    participant_id: p.participant_id.clone(),
                    amount: base + u64::from((i as u64) < remainder),
                })
                .collect()
        }
        SplitType::Itemized => {
            let mut shares: Vec<Share> = state
                .participants
                .iter()
                .map(|p| Share {
                    participant_id: p.participant_id.clone(),
                    amount: 0,
                })
                .collect();
            for item in &state.items {
                if let Some(share) = shares
                    .iter_mut()
                    .find(|s| s.participant_id == item.added_by)
                {
                    share.amount += item.subtotal;
                }
            }
            shares
        }
        SplitType::Custom => match &state.custom_amounts {
            None => Vec::new(),
            Some(amounts) => state
                .participants
                .iter()
                .map(|p| Share {
                    participant_id: p.participant_id.clone(),
                    amount: amounts.get(&p.participant_id).copied().unwrap_or(0),
                })
                .collect(),
        },
    }
}

pub(super) fn custom_matches(state: &OrderState) -> bool {
    state
        .custom_amounts
        .as_ref()
        .is_some_and(|a| a.values().sum::<u64>() == state.total)
}

/// Recomputes the total and the splits after a change.
pub(super) fn settle(state: &mut OrderState, now_ms: i64) {
    state.total = state.items.iter().map(|i| i.subtotal).sum();
    state.splits = compute_splits(state);
    state.updated_at = state.updated_at.max(now_ms);
}

/// Changes the split. A custom split may come without `amounts` (seed 001's own message):
/// the type changes and the amounts stay pending — those supplied earlier, or none — until an
/// `update_split` brings them; finalize waits for amounts that sum to the total.
pub(super) fn update_split(next: &mut OrderState, data: SplitData) -> Result<(), Rejection> {
    match data.split_type {
        SplitType::Custom => {
            let Some(amounts) = data.amounts else {
                next.split_type = SplitType::Custom;
                return Ok(());
            };
            if let Some(stranger) = amounts
                .keys()
                .find(|id| !next.participants.iter().any(|p| &p.participant_id == *id))
            {
                return Err(invalid(format!("{stranger} is not a participant")));
            }
            let sum = amounts
                .values()
                .try_fold(0u64, |acc, a| acc.checked_add(*a))
                .unwrap_or(u64::MAX);
            let total: u64 = next.items.iter().map(|i| i.subtotal).sum();
            if sum != total {
                return Err(invalid(format!(
                    "custom amounts sum to {sum}, the total is {total}"
                )));
            }
            next.custom_amounts = Some(amounts);
        }
        _ => next.custom_amounts = None,
    }
    next.split_type = data.split_type;
    Ok(())
}
