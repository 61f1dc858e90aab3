//! Applies a [`FaultSpec`] to the binary frames of one session, in both directions.
//!
//! The injector is driven by the session task: every frame goes through
//! [`FaultInjector::on_frame`], which returns the frames to pass on now; held-back
//! frames come out of [`FaultInjector::poll_released`] once their time has come.
//! State (frame counters, the RNG, whether the cut already happened) lives as long
//! as the session, so a reconnecting client is not hit by the same `Nth` rule or
//! cut again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ssm_channel::is_acknowledge_frame as is_ack;

use super::options::{CutRule, Direction, FaultAction, FaultSpec, Selector};

/// How long a reordered frame waits for a successor before it is released anyway.
const REORDER_HOLD: Duration = Duration::from_millis(300);

/// Counters of what the injector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Frames dropped.
    pub dropped: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames reordered.
    pub reordered: u64,
    /// Frames delayed.
    pub delayed: u64,
    /// Connections cut.
    pub cuts: u64,
}

#[derive(Debug)]
struct Held {
    release_at: Instant,
    dir: Direction,
    frame: Bytes,
    /// Reordered frames also come out after the next frame in their direction.
    reorder: bool,
}

/// Per-session fault state.
#[derive(Debug)]
pub struct FaultInjector {
    spec: FaultSpec,
    rng: StdRng,
    count_in: u64,
    count_out: u64,
    /// Frames from the client other than acknowledgements.
    count_input: u64,
    total_frames: u64,
    total_bytes: u64,
    cut_done: bool,
    cut_pending: bool,
    held: VecDeque<Held>,
    counters: FaultCounters,
}

impl FaultInjector {
    /// A fresh injector for `spec`.
    pub fn new(spec: FaultSpec) -> Self {
        let seed = spec.seed.unwrap_or(0);
        Self {
            spec,
            rng: StdRng::seed_from_u64(seed),
            count_in: 0,
            count_out: 0,
            count_input: 0,
            total_frames: 0,
            total_bytes: 0,
            cut_done: false,
            cut_pending: false,
            held: VecDeque::new(),
            counters: FaultCounters::default(),
        }
    }

    /// What was injected so far.
    pub fn counters(&self) -> FaultCounters {
        self.counters
    }

    /// Whether any rule could ever fire.
    pub fn is_active(&self) -> bool {
        !self.spec.is_empty()
    }

    /// Feeds one frame travelling in `dir`; returns the frames to deliver now (in
    /// order). Also counts towards the cut rule (see [`FaultInjector::take_cut`]).
    pub fn on_frame(&mut self, now: Instant, dir: Direction, frame: Bytes) -> Vec<Bytes> {
        if self.spec.is_empty() {
            return vec![frame];
        }
        let n = match dir {
            Direction::In => {
                self.count_in += 1;
                self.count_in
            }
            Direction::Out => {
                self.count_out += 1;
                self.count_out
            }
        };
        self.total_frames += 1;
        if dir == Direction::In && !is_ack(&frame) {
            self.count_input += 1;
        }
        self.total_bytes += frame.len() as u64;
        if !self.cut_done {
            let hit = match self.spec.cut {
                Some(CutRule::Frames(limit)) => self.total_frames >= limit,
                Some(CutRule::Bytes(limit)) => self.total_bytes >= limit,
                Some(CutRule::Input(limit)) => self.count_input >= limit,
                None => false,
            };
            if hit {
                self.cut_done = true;
                self.cut_pending = true;
                self.counters.cuts += 1;
            }
        }

        let mut action = None;
        for rule in &self.spec.frames {
            if !rule.directions.contains(dir) {
                continue;
            }
            let selected = match rule.selector {
                Selector::Nth(k) => k == n,
                Selector::Fraction(p) => self.rng.random_bool(p),
            };
            if selected {
                action = Some(rule.action);
                break;
            }
        }

        let mut out = Vec::with_capacity(2);
        match action {
            None => out.push(frame),
            Some(FaultAction::Drop) => self.counters.dropped += 1,
            Some(FaultAction::Duplicate) => {
                self.counters.duplicated += 1;
                out.push(frame.clone());
                out.push(frame);
            }
            Some(FaultAction::Delay(d)) => {
                self.counters.delayed += 1;
                self.held.push_back(Held {
                    release_at: now + d,
                    dir,
                    frame,
                    reorder: false,
                });
                return out;
            }
            Some(FaultAction::Reorder) => {
                self.counters.reordered += 1;
                self.held.push_back(Held {
                    release_at: now + REORDER_HOLD,
                    dir,
                    frame,
                    reorder: true,
                });
                return out;
            }
        }
        // A frame went through in this direction: release frames held for reordering.
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].reorder && self.held[i].dir == dir {
                if let Some(h) = self.held.remove(i) {
                    out.push(h.frame);
                }
            } else {
                i += 1;
            }
        }
        out
    }

    /// Whether the cut rule has just fired; true once per session.
    pub fn take_cut(&mut self) -> bool {
        std::mem::take(&mut self.cut_pending)
    }

    /// Frames whose hold time has passed, with their direction.
    pub fn poll_released(&mut self, now: Instant) -> Vec<(Direction, Bytes)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].release_at <= now {
                if let Some(h) = self.held.remove(i) {
                    out.push((h.dir, h.frame));
                }
            } else {
                i += 1;
            }
        }
        out
    }

    /// When the next held frame is due.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.release_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(i: u8) -> Bytes {
        Bytes::from(vec![i])
    }

    #[test]
    fn nth_rules_hit_once_per_direction() {
        let mut inj = FaultInjector::new("drop:in:2,dup:out:1".parse().expect("spec"));
        let t = Instant::now();
        assert_eq!(inj.on_frame(t, Direction::In, f(1)), vec![f(1)]);
        assert!(inj.on_frame(t, Direction::In, f(2)).is_empty());
        assert_eq!(inj.on_frame(t, Direction::In, f(3)), vec![f(3)]);
        assert_eq!(inj.on_frame(t, Direction::Out, f(9)), vec![f(9), f(9)]);
        assert_eq!(inj.on_frame(t, Direction::Out, f(8)), vec![f(8)]);
        assert_eq!(inj.counters().dropped, 1);
        assert_eq!(inj.counters().duplicated, 1);
    }

    #[test]
    fn reorder_releases_after_next_or_timeout() {
        let mut inj = FaultInjector::new("reorder:out:1".parse().expect("spec"));
        let t = Instant::now();
        assert!(inj.on_frame(t, Direction::Out, f(1)).is_empty());
        // A frame in the other direction does not release it.
        assert_eq!(inj.on_frame(t, Direction::In, f(5)), vec![f(5)]);
        assert_eq!(inj.on_frame(t, Direction::Out, f(2)), vec![f(2), f(1)]);

        let mut inj = FaultInjector::new("reorder:out:1".parse().expect("spec"));
        assert!(inj.on_frame(t, Direction::Out, f(1)).is_empty());
        assert_eq!(inj.next_release(), Some(t + REORDER_HOLD));
        assert!(inj.poll_released(t).is_empty());
        assert_eq!(
            inj.poll_released(t + REORDER_HOLD),
            vec![(Direction::Out, f(1))]
        );
        assert_eq!(inj.next_release(), None);
    }

    #[test]
    fn delay_holds_for_the_given_time() {
        let mut inj = FaultInjector::new("delay:in:1:50".parse().expect("spec"));
        let t = Instant::now();
        assert!(inj.on_frame(t, Direction::In, f(1)).is_empty());
        assert_eq!(inj.on_frame(t, Direction::In, f(2)), vec![f(2)]);
        assert!(inj.poll_released(t + Duration::from_millis(49)).is_empty());
        assert_eq!(
            inj.poll_released(t + Duration::from_millis(50)),
            vec![(Direction::In, f(1))]
        );
    }

    #[test]
    fn cut_fires_once() {
        let mut inj = FaultInjector::new("cut:frames:3".parse().expect("spec"));
        let t = Instant::now();
        for i in 0..10 {
            inj.on_frame(t, Direction::In, f(i));
            assert_eq!(inj.take_cut(), i == 2, "frame {i}");
        }
        let mut inj = FaultInjector::new("cut:bytes:5".parse().expect("spec"));
        inj.on_frame(t, Direction::Out, Bytes::from_static(b"1234"));
        assert!(!inj.take_cut());
        inj.on_frame(t, Direction::In, Bytes::from_static(b"5"));
        assert!(inj.take_cut());
    }

    #[test]
    fn fractions_are_seeded_and_roughly_right() {
        let spec: FaultSpec = "drop:both:0.25,seed:42".parse().expect("spec");
        let run = |spec: &FaultSpec| {
            let mut inj = FaultInjector::new(spec.clone());
            let t = Instant::now();
            (0..4000u32)
                .map(|i| inj.on_frame(t, Direction::In, f((i % 250) as u8)).len())
                .collect::<Vec<_>>()
        };
        let a = run(&spec);
        assert_eq!(a, run(&spec), "same seed, same schedule");
        let dropped = a.iter().filter(|&&n| n == 0).count();
        assert!((800..1200).contains(&dropped), "dropped {dropped} of 4000");
    }
}
