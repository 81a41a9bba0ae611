//! Rate limiting of client events on one channel.

use std::time::Instant;

/// A token bucket: `rate` events per second, bursts of up to `rate`.
#[derive(Debug)]
pub(super) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn new(rate: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Takes a token if one is left; `rate` 0 means unlimited.
    pub(super) fn take(&mut self, rate: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_up_to_the_rate_then_refills_with_time() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10, start);
        assert_eq!((0..15).filter(|_| bucket.take(10, start)).count(), 10);
        let later = start + Duration::from_millis(250);
        assert!(bucket.take(10, later));
        assert!(bucket.take(10, later));
        assert!(!bucket.take(10, later));
    }

    #[test]
    fn a_rate_of_zero_is_unlimited() {
        let start = Instant::now();
        let mut bucket = Bucket::new(0, start);
        assert!((0..1000).all(|_| bucket.take(0, start)));
    }
}
