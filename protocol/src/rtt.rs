//! Round-trip-time estimation (Jacobson/Karels, as the reference peers do it).

use std::time::Duration;

const VAR_FLOOR: Duration = Duration::from_millis(10);

/// SRTT / RTTVAR / RTO state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    srtt: Duration,
    rttvar: Duration,
    rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    /// Starts from the given SRTT and RTO (RTTVAR 0), with RTO bounds.
    pub fn new(
        initial_rtt: Duration,
        initial_rto: Duration,
        min_rto: Duration,
        max_rto: Duration,
    ) -> RttEstimator {
        RttEstimator {
            srtt: initial_rtt,
            rttvar: Duration::ZERO,
            rto: initial_rto.clamp(min_rto, max_rto.max(min_rto)),
            min_rto,
            max_rto: max_rto.max(min_rto),
        }
    }

    /// Feeds one RTT sample.
    ///
    /// `RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − sample|`, `SRTT = 7/8·SRTT + 1/8·sample`,
    /// `RTO = SRTT + max(10 ms, 4·RTTVAR)`, clamped to `[min_rto, max_rto]`.
    pub fn on_sample(&mut self, sample: Duration) {
        let diff = self.srtt.abs_diff(sample);
        self.rttvar = self.rttvar * 3 / 4 + diff / 4;
        self.srtt = self.srtt * 7 / 8 + sample / 8;
        let rto = self.srtt + (self.rttvar * 4).max(VAR_FLOOR);
        self.rto = rto.clamp(self.min_rto, self.max_rto);
    }

    /// Smoothed RTT.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }

    /// RTT variation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The timeout before resend number `resends + 1` of one message: the RTO doubled
    /// per earlier resend when `backoff` is on, capped at `max_rto`.
    pub fn backoff_rto(&self, resends: u32, backoff: bool) -> Duration {
        if !backoff {
            return self.rto;
        }
        let factor = 1u32 << resends.min(16);
        self.rto
            .saturating_mul(factor)
            .min(self.max_rto)
            .max(self.rto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn reference_check_value() {
        // From the initial state, one 140 ms sample: RTTVAR 10, SRTT 105, RTO 145.
        let mut r = RttEstimator::new(ms(100), ms(200), ms(10), ms(1000));
        assert_eq!(r.rto(), ms(200));
        r.on_sample(ms(140));
        assert_eq!(r.rttvar(), ms(10));
        assert_eq!(r.srtt(), ms(105));
        assert_eq!(r.rto(), ms(145));
    }

    #[test]
    fn floor_and_cap() {
        let mut r = RttEstimator::new(ms(100), ms(200), ms(10), ms(1000));
        for _ in 0..200 {
            r.on_sample(ms(100));
        }
        assert_eq!(r.rto(), ms(110)); // SRTT + 10 ms floor
        for _ in 0..50 {
            r.on_sample(ms(5000));
        }
        assert_eq!(r.rto(), ms(1000));
        assert_eq!(r.backoff_rto(3, true), ms(1000));
        let r = RttEstimator::new(ms(100), ms(200), ms(10), ms(1000));
        assert_eq!(r.backoff_rto(0, true), ms(200));
        assert_eq!(r.backoff_rto(1, true), ms(400));
        assert_eq!(r.backoff_rto(2, true), ms(800));
        assert_eq!(r.backoff_rto(3, true), ms(1000));
        assert_eq!(r.backoff_rto(40, true), ms(1000));
        assert_eq!(r.backoff_rto(3, false), ms(200));
    }
}
