//! Codes a provider sent that our mapping tables do not know: each is logged once per process
//! (a warm Lambda sees the same odd code thousands of times) and every sighting is counted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

type Key = (&'static str, &'static str, String);

static LOGGED: LazyLock<Mutex<HashSet<Key>>> = LazyLock::new(|| Mutex::new(HashSet::new()));
static SEEN: AtomicU64 = AtomicU64::new(0);

/// Record an unknown `code` of `provider`'s `field` (`kdniao`, `StateEx`, `412x`). Logs a
/// warning the first time this process sees that (provider, field, code), counts every call.
/// Returns whether this call was the first sighting (it logged).
pub fn note_unknown(provider: &'static str, field: &'static str, code: &str) -> bool {
    SEEN.fetch_add(1, Ordering::Relaxed);
    let first = {
        // A poisoned lock only means another thread panicked mid-insert: the set is still usable.
        let mut set = LOGGED.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the memory a provider sending garbage could take: past this, log nothing new.
        set.len() < MAX_DISTINCT && set.insert((provider, field, code.to_string()))
    };
    if first {
        tracing::warn!(
            provider,
            field,
            code,
            "unknown provider code; mapped to a safe status (logged once per process)"
        );
    }
    first
}

/// How many unknown codes (sightings, not distinct codes) this process has seen.
pub fn unknown_codes_seen() -> u64 {
    SEEN.load(Ordering::Relaxed)
}

/// Distinct codes remembered at most.
const MAX_DISTINCT: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_logs_once_and_every_sighting_counts() {
        // Other tests in this process may note codes concurrently: compare deltas, and use codes
        // nobody else uses.
        let before = unknown_codes_seen();
        assert!(note_unknown("test-unknown", "State", "x-1"));
        assert!(!note_unknown("test-unknown", "State", "x-1"));
        assert!(note_unknown("test-unknown", "StateEx", "x-1"));
        assert!(note_unknown("test-unknown", "State", "x-2"));
        assert!(!note_unknown("test-unknown", "State", "x-2"));
        assert!(unknown_codes_seen() - before >= 5);
    }
}
