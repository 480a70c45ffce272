//! Locking shared state.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: every critical section here leaves the data valid,
/// so a panic elsewhere must not take the whole server down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
