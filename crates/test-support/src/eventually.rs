use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Ok`, or panics with its last error once `deadline` has passed.
/// Prefer the `eventually!` macro, which names the checked expression in the panic.
pub fn poll_until<T, E: Debug>(
    deadline: Duration,
    what: &str,
    check: impl FnMut() -> Result<T, E>,
) -> T {
    match try_poll_until(deadline, check) {
        Ok(value) => value,
        Err(e) => panic!("{what} did not hold within {deadline:?}; last error: {e:?}"),
    }
}

/// Polls `check` until it returns `Ok`, backing off from 10 ms to 200 ms between tries; after
/// `deadline`, returns its last error instead of panicking (for callers that clean up first).
/// This is the one place that waits between polls.
pub fn try_poll_until<T, E>(
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(e) if start.elapsed() >= deadline => return Err(e),
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// `eventually!(deadline, || check())`: waits until the closure returns `Ok(value)` and yields the
/// value; panics with the last error after `deadline`.
#[macro_export]
macro_rules! eventually {
    ($deadline:expr, $check:expr) => {
        $crate::poll_until($deadline, stringify!($check), $check)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_success() {
        let mut tries = 0;
        let value = poll_until(Duration::from_secs(5), "third try", || {
            tries += 1;
            if tries < 3 {
                Err(tries)
            } else {
                Ok(tries)
            }
        });
        assert_eq!(value, 3);
    }

    #[test]
    fn gives_the_last_error_after_the_deadline() {
        let result: Result<(), &str> = try_poll_until(Duration::from_millis(50), || Err("never"));
        assert_eq!(result, Err("never"));
    }
}
