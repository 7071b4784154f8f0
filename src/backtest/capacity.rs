//! The capacity model: replicas requested → replicas ready → requests served.
//!
//! ```text
//! requests(minute)  = clicks of the target's campaigns in that minute × requests_per_click
//!                     + baseline_rps × 60
//! capacity(minute)  = (time-average of ready replicas over the minute) × capacity_per_replica × 60
//! overloaded(minute)= max(0, requests − capacity)
//! ```
//!
//! A policy *requests* a replica count at some instant. A replica added at
//! `t` is *ready* (serves requests) from `t + startup`; until then it costs but
//! does not serve. A lower count removes replicas at once, the ones still
//! starting first (as Kubernetes deletes unready pods first). Replicas that
//! run when the log starts (`min_replicas`) are ready. Cost is counted on
//! requested replicas (a starting pod is billed), in replica-minutes.

use std::collections::VecDeque;

use serde::Serialize;

/// One minute in milliseconds.
pub const MIN: i64 = 60_000;

/// A replica count that holds from `t_ms` on (a step of a step function).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// From this time (epoch ms).
    pub t_ms: i64,
    /// Replicas.
    pub replicas: u32,
}

/// Requested and ready replicas over time, as step functions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Provisioned {
    /// What the policy asked for (the first step is the initial count).
    pub requested: Vec<Step>,
    /// What served requests (requested, minus replicas still starting).
    pub ready: Vec<Step>,
}

/// Applies a policy's decisions (`Step`s in time order: "from `t_ms` on,
/// run `replicas`") to a target that starts at `t0_ms` with `initial` ready
/// replicas; each added replica becomes ready `startup_ms` later.
pub fn provision(t0_ms: i64, initial: u32, decisions: &[Step], startup_ms: i64) -> Provisioned {
    let mut requested = vec![Step { t_ms: t0_ms, replicas: initial }];
    let mut ready_steps = vec![Step { t_ms: t0_ms, replicas: initial }];
    let mut ready = initial;
    let mut want = initial;
    // Starting replicas, oldest first: (ready at, count).
    let mut starting: VecDeque<(i64, u32)> = VecDeque::new();
    let promote = |until: i64, starting: &mut VecDeque<(i64, u32)>, ready: &mut u32, steps: &mut Vec<Step>| {
        while let Some(&(at, n)) = starting.front() {
            if at > until {
                break;
            }
            starting.pop_front();
            *ready += n;
            push_step(steps, Step { t_ms: at, replicas: *ready });
        }
    };
    for d in decisions {
        let t = d.t_ms.max(t0_ms);
        promote(t, &mut starting, &mut ready, &mut ready_steps);
        if d.replicas == want {
            continue;
        }
        if d.replicas > want {
            starting.push_back((t + startup_ms.max(0), d.replicas - want));
        } else {
            let mut remove = want - d.replicas;
            while remove > 0 {
                match starting.back_mut() {
                    Some((_, n)) if *n > remove => {
                        *n -= remove;
                        remove = 0;
                    }
                    Some(&mut (_, n)) => {
                        starting.pop_back();
                        remove -= n;
                    }
                    None => {
                        ready -= remove;
                        remove = 0;
                        push_step(&mut ready_steps, Step { t_ms: t, replicas: ready });
                    }
                }
            }
        }
        want = d.replicas;
        push_step(&mut requested, Step { t_ms: t, replicas: want });
    }
    promote(i64::MAX, &mut starting, &mut ready, &mut ready_steps);
    Provisioned { requested, ready: ready_steps }
}

/// Appends a step, replacing one at the same instant and dropping a no-op.
fn push_step(steps: &mut Vec<Step>, s: Step) {
    if let Some(last) = steps.last_mut() {
        if last.t_ms == s.t_ms {
            last.replicas = s.replicas;
            let n = steps.len();
            if n >= 2 && steps[n - 2].replicas == s.replicas {
                steps.pop();
            }
            return;
        }
        if last.replicas == s.replicas {
            return;
        }
    }
    steps.push(s);
}

/// Time-average of a step function over each of `n` minutes from `t0_ms`.
/// The function is its first step's value before that step.
pub fn per_minute_average(steps: &[Step], t0_ms: i64, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0usize;
    for m in 0..n {
        let (a, b) = (t0_ms + m as i64 * MIN, t0_ms + (m as i64 + 1) * MIN);
        // Advance to the step in force at `a`.
        while i + 1 < steps.len() && steps[i + 1].t_ms <= a {
            i += 1;
        }
        let mut acc = 0.0;
        let mut t = a;
        let mut j = i;
        let mut value = steps.get(j).map_or(0, |s| s.replicas);
        while t < b {
            let next = steps.get(j + 1).map_or(i64::MAX, |s| s.t_ms).min(b);
            if next > t {
                acc += f64::from(value) * (next - t) as f64;
                t = next;
            }
            if t < b {
                j += 1;
                value = steps[j].replicas;
            }
        }
        out.push(acc / MIN as f64);
    }
    out
}

/// Largest value of a step function at or after `from_ms` (its value in force
/// at `from_ms` included) and before `to_ms`.
pub fn peak(steps: &[Step], from_ms: i64, to_ms: i64) -> u32 {
    let mut best = 0;
    for (k, s) in steps.iter().enumerate() {
        let end = steps.get(k + 1).map_or(i64::MAX, |n| n.t_ms);
        if end > from_ms && s.t_ms < to_ms {
            best = best.max(s.replicas);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_become_ready_after_startup_and_leave_at_once() {
        let d = [Step { t_ms: 60_000, replicas: 5 }, Step { t_ms: 120_000, replicas: 3 }, Step { t_ms: 300_000, replicas: 1 }];
        let p = provision(0, 2, &d, 90_000);
        assert_eq!(
            p.requested,
            vec![
                Step { t_ms: 0, replicas: 2 },
                Step { t_ms: 60_000, replicas: 5 },
                Step { t_ms: 120_000, replicas: 3 },
                Step { t_ms: 300_000, replicas: 1 }
            ]
        );
        // 3 added at 1m (ready 2m30s); 2 of them removed at 2m while starting: 1 ready at 2m30s.
        assert_eq!(p.ready, vec![Step { t_ms: 0, replicas: 2 }, Step { t_ms: 150_000, replicas: 3 }, Step { t_ms: 300_000, replicas: 1 }]);
        let avg = per_minute_average(&p.ready, 0, 6);
        assert_eq!(avg[0], 2.0);
        assert_eq!(avg[2], 2.5, "2 for 30 s, 3 for 30 s");
        assert_eq!(avg[5], 1.0);
        assert_eq!(peak(&p.requested, 0, 360_000), 5);
        assert_eq!(peak(&p.requested, 130_000, 360_000), 3);
    }

    #[test]
    fn zero_startup_is_immediate() {
        let p = provision(0, 1, &[Step { t_ms: 30_000, replicas: 4 }], 0);
        assert_eq!(p.ready, p.requested);
        assert_eq!(per_minute_average(&p.ready, 0, 2), vec![2.5, 4.0]);
    }
}
