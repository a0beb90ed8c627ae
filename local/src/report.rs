//! The demo's closing table, computed from what the local stack holds (the table, moto's record
//! of sent SMS, the queues) and from the sandbox's request counters.

use crate::pipeline::{BoxError, Parcel, Pipeline};
use parcelwatch::domain::Status;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

#[derive(Debug, Default, Clone)]
pub struct DemoReport {
    pub shipments: usize,
    pub by_status: BTreeMap<Status, usize>,
    /// SMS read back from the local SNS, by the status the buyer was told about (the SNS
    /// message id joined with the notification ledger's record of which transition it was).
    pub sms_by_status: BTreeMap<Status, usize>,
    /// SMS in the local SNS that no ledger entry accounts for (should be 0).
    pub sms_unaccounted: usize,
    pub sms_total: usize,
    pub provider_calls: u64,
    /// Trace queries per provider (sandbox counts): Kdniao, Kuaidi100, Taobao TOP.
    pub calls_by_provider: [(&'static str, u64); 3],
    /// Kdniao subscriptions and pushes delivered (push mode).
    pub subscriptions: usize,
    pub pushes: u64,
    /// Provider switches (the `ProviderFailover` metric of this process).
    pub failovers: u64,
    pub delivered: usize,
    pub dlq: usize,
    pub notify_failures: usize,
    /// Shipments whose final status differs from the simulator's truth.
    pub mismatched: usize,
}

impl DemoReport {
    pub async fn collect(p: &Pipeline, parcels: &[Parcel]) -> Result<DemoReport, BoxError> {
        let shipments = p.shipments().await?;
        let sms = p.sent_sms().await?;
        let now = p.now();
        let kdniao = p.sandbox.stats().total_requests();
        let kuaidi100 = p.sandbox.kuaidi100_stats().requests;
        let taobao = p.sandbox.top_trace_requests().0;
        let mut r = DemoReport {
            shipments: shipments.len(),
            provider_calls: kdniao + kuaidi100 + taobao,
            calls_by_provider: [
                ("kdniao", kdniao),
                ("kuaidi100", kuaidi100),
                ("taobao", taobao),
            ],
            subscriptions: p.sandbox.subscriptions().len(),
            pushes: p.totals.pushes_acked,
            failovers: parcelwatch::metrics::total_of("ProviderFailover"),
            dlq: p.peek_queue(&p.stack.tracking_dlq_url).await?.len(),
            notify_failures: p.peek_queue(&p.stack.notify_failure_queue_url).await?.len(),
            sms_total: sms.len(),
            ..Default::default()
        };
        let by_id: HashMap<_, _> = shipments.iter().map(|s| (s.id.clone(), s)).collect();
        for s in &shipments {
            *r.by_status.entry(s.status).or_default() += 1;
        }
        r.delivered = r.by_status.get(&Status::Delivered).copied().unwrap_or(0);
        let told = p.sms_ledger().await?;
        for m in &sms {
            match told.get(m.message_id.as_str()) {
                Some(st) => *r.sms_by_status.entry(*st).or_default() += 1,
                None => r.sms_unaccounted += 1,
            }
        }
        for pc in parcels {
            let truth = pc
                .journey
                .truth_statuses(now)
                .last()
                .map(|(_, s)| *s)
                .unwrap_or(Status::Pending);
            let ours = by_id.get(&pc.id).map(|s| s.status);
            if ours != Some(truth)
                && !(truth == Status::Pending && ours == Some(Status::InfoReceived))
            {
                r.mismatched += 1;
            }
        }
        Ok(r)
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<26} {:>16} {:>22}",
            "status", "shipments ending", "SMS telling of it"
        );
        let _ = writeln!(
            out,
            "{:<26} {:>16} {:>22}",
            "", "in this status", "(read back from SNS)"
        );
        let _ = writeln!(out, "{}", "-".repeat(66));
        for st in Status::ALL {
            let n = self.by_status.get(&st).copied().unwrap_or(0);
            let sms = self.sms_by_status.get(&st).copied().unwrap_or(0);
            if n + sms > 0 {
                let _ = writeln!(out, "{:<26} {:>16} {:>22}", st.as_str(), n, sms);
            }
        }
        let _ = writeln!(out, "{}", "-".repeat(66));
        let _ = writeln!(
            out,
            "{:<26} {:>16} {:>22}",
            "total", self.shipments, self.sms_total
        );
        let per = if self.delivered > 0 {
            self.provider_calls as f64 / self.delivered as f64
        } else {
            0.0
        };
        let by: Vec<String> = self
            .calls_by_provider
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "provider calls (sandbox count): {}  ({per:.1} per delivered parcel; {})  failovers: {}",
            self.provider_calls,
            by.join(", "),
            self.failovers
        );
        if self.subscriptions > 0 {
            let _ = writeln!(
                out,
                "push mode: {} subscriptions, {} pushes acknowledged",
                self.subscriptions, self.pushes
            );
        }
        let _ = writeln!(
            out,
            "tracking DLQ: {}   notifier on-failure queue: {}   final status != simulator truth: {}   SMS without a ledger entry: {}",
            self.dlq, self.notify_failures, self.mismatched, self.sms_unaccounted
        );
        out
    }
}
