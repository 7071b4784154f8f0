//! Aggregation for `/metrics`, `/readyz` and `/api/campaigns`: once a
//! second, the partitions' snapshots become instance-wide metrics, the
//! readiness verdict and the API view in the shared [`Status`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use super::partition::PartitionShared;
use super::{lock, Ctx};
use crate::engine::TargetView;
use crate::shutdown::Shutdown;
use crate::sink::metrics::{best_audiences, best_direct_waves, best_generation_intervals, rank_campaigns, sum_targets};
use crate::status::{ApiView, PartitionView, Status};

/// Once a second: metrics from partition snapshots, lag, readiness, the API
/// view; every other second the partitions' high watermarks are fetched.
pub(super) async fn aggregate(ctx: Arc<Ctx>, status: Status, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        let shared: Vec<Arc<PartitionShared>> = lock(&ctx.handles).values().map(|h| h.shared.clone()).collect();
        if n % 2 == 1 && !shared.is_empty() {
            let c = ctx.clone();
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for p in s {
                    match c.reader.fetch_watermarks(&p.topic, p.partition, Duration::from_secs(2)) {
                        Ok((_, high)) => {
                            p.high.store(high, Ordering::SeqCst);
                            p.high_ok.store(true, Ordering::SeqCst);
                        }
                        Err(_) => p.high_ok.store(false, Ordering::SeqCst),
                    }
                }
            })
            .await;
        }
        let cfg = &ctx.cfg;
        let mut tracked = 0;
        let mut viral = 0;
        let mut wm: Option<i64> = None;
        let mut all_top = Vec::new();
        let mut targets: Vec<Vec<TargetView>> = Vec::new();
        let mut parts = Vec::new();
        let mut ready = !shared.is_empty();
        let mut reason = if shared.is_empty() { "no partition assigned".to_string() } else { String::new() };
        for p in &shared {
            let s = lock(&p.snapshot).clone();
            tracked += s.tracked;
            viral += s.viral;
            if let Some(w) = s.watermark_ms {
                wm = Some(wm.map_or(w, |x: i64| x.min(w)));
            }
            all_top.extend(s.top);
            targets.push(s.targets);
            let position = p.position.load(Ordering::SeqCst);
            let lag = (p.high.load(Ordering::SeqCst) - position).max(0);
            ctx.metrics.consumer_lag.with_label_values(&[&*p.topic, &p.partition.to_string()]).set(lag);
            let rebuilt = p.rebuilt.load(Ordering::SeqCst);
            let blocked = lock(&p.blocked).clone();
            if let Some(why) = blocked {
                ready = false;
                reason = format!("{}/{} output blocked: {why}", p.topic, p.partition);
            } else if !rebuilt {
                ready = false;
                reason = format!("{}/{} rebuilding", p.topic, p.partition);
            } else if lag as u64 > cfg.kafka.ready_max_lag {
                ready = false;
                reason = format!("{}/{} lags by {lag} messages", p.topic, p.partition);
            }
            parts.push(PartitionView {
                topic: p.topic.to_string(),
                partition: p.partition,
                rebuilt,
                position,
                lag,
                watermark: s.watermark_ms.map(crate::time::rfc3339),
            });
        }
        ctx.metrics.campaigns_tracked.set(tracked as i64);
        ctx.metrics.campaigns_viral.set(viral as i64);
        if let Some(w) = wm {
            ctx.metrics.watermark.set(w as f64 / 1000.0);
        }
        let refs: Vec<&[TargetView]> = targets.iter().map(Vec::as_slice).collect();
        let plans = match &ctx.plan_board {
            Some(board) => lock(board).clone(),
            None => sum_targets(cfg, &refs),
        };
        ctx.metrics.set_targets(cfg, &plans);
        let waves = best_direct_waves(&refs);
        let mut audiences = best_audiences(&refs);
        ctx.metrics.set_direct_waves(&waves);
        let intervals = best_generation_intervals(&refs);
        let mut errors = crate::sink::metrics::best_forecast_errors(&refs);
        ctx.metrics.set_generation_intervals(&intervals);
        rank_campaigns(&mut all_top);
        all_top.truncate(cfg.output.top_k as usize);
        ctx.metrics.set_top_campaigns(&all_top);
        ctx.metrics.ready.set(i64::from(ready));
        status.ready.store(ready, Ordering::SeqCst);
        *lock(&status.not_ready_reason) = reason;
        let mut clicks: BTreeMap<&str, u64> = BTreeMap::new();
        for t in targets.iter().flatten() {
            *clicks.entry(&t.target).or_default() += t.clicks;
        }
        let target_views = plans
            .iter()
            .map(|(name, plan)| TargetView {
                target: name.clone(),
                desired_replicas: plan.desired_replicas,
                forecast_rps: plan.forecast_rps,
                headroom: plan.headroom,
                headroom_learned: None,
                clicks: clicks.get(name.as_str()).copied().unwrap_or(0),
                direct_wave: waves.get(name).cloned(),
                generation_interval: intervals.get(name).cloned(),
                audiences: audiences.remove(name).unwrap_or_default(),
                forecast_error: errors.remove(name),
            })
            .collect();
        *lock(&status.api) = ApiView { ready, campaigns: all_top, targets: target_views, partitions: parts };
    }
}
